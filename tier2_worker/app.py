"""Tier 2's task: the big model's answer is final for every item it receives.

With ``TANGO_MAX_WAIT_MS`` > 0 (``tango worker tier2 --max-wait-ms``) the
model sits behind a ``Batcher``: run the worker with the threads pool, each
thread holding one message, and the batcher merges their items into full
batches (see ``tier2_worker.batching``).
"""
from __future__ import annotations

import numpy as np

from common.cascade import combine
from common.labels import LabelAlignment
from common.messages import TASK_TIER2, Chunk
from common.faults import Scorer
from common.worker import Decision, TierRuntime, WorkerSettings
from tier2_worker.batching import Batcher


def decide(runtime: TierRuntime, chunk: Chunk, probs: np.ndarray, alignment: LabelAlignment) -> Decision:
    """Every item is decided here, mapped to the job's labels by ``common.cascade.combine``."""
    label_ids, scores, _ = combine(probs, probs, np.ones(len(probs), dtype=bool), alignment)
    return runtime.entries(chunk, list(chunk.items), label_ids, scores), []


def batching(settings: WorkerSettings, model: Scorer) -> Batcher | None:
    """The cross-chunk batcher in front of the model, when the worker asks for one."""
    if settings.max_wait_ms <= 0:
        return None
    return Batcher(model.probabilities, batch_size=settings.batch_size, max_wait=settings.max_wait_ms / 1000)


runtime = TierRuntime(tier=2, decide=decide, batching=batching)
app = runtime.app


@app.task(name=TASK_TIER2)
def classify(payload: dict) -> dict:
    return runtime.run(payload)
