"""Tier 2's task: the big model's answer is final for every item it receives."""
from __future__ import annotations

import numpy as np

from common.cascade import combine
from common.labels import LabelAlignment
from common.messages import TASK_TIER2, Chunk
from common.worker import Decision, TierRuntime


def decide(runtime: TierRuntime, chunk: Chunk, probs: np.ndarray, alignment: LabelAlignment) -> Decision:
    """Every item is decided here, mapped to the job's labels by ``common.cascade.combine``."""
    label_ids, scores, _ = combine(probs, probs, np.ones(len(probs), dtype=bool), alignment)
    return runtime.entries(chunk, list(chunk.items), label_ids, scores), []


runtime = TierRuntime(tier=2, decide=decide)
app = runtime.app


@app.task(name=TASK_TIER2)
def classify(payload: dict) -> dict:
    return runtime.run(payload)
