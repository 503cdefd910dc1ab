"""Tier 2's Celery app: the big model's answer is final for every item it receives.

With ``TANGO_MAX_WAIT_MS`` > 0 (``tango worker tier2 --max-wait-ms``) the
model sits behind a ``Batcher``: run the worker with the threads pool, each
thread holding one message, and the batcher merges their items into full
batches (see ``tier2_worker.batching``). It gathers ``GATHER_BATCHES`` model
batches at a time: the model sorts what it gets by length, so a bigger pool pads
each batch less (bench/RESULTS.md, section (2), on why the batcher pays on a CPU).
"""
from __future__ import annotations

from common.ml.models import import_model_code, load_for_worker
from common.queue.config import WorkerSettings
from common.queue.decisions import decide_tier2
from common.queue.faults import Scorer
from common.queue.messages import TASK_TIER2
from common.queue.runtime import TierRuntime
from tier2_worker.batching import Batcher

GATHER_BATCHES = 4


def batching(settings: WorkerSettings, model: Scorer) -> Batcher | None:
    """The cross-chunk batcher in front of the model, when the worker asks for one."""
    if settings.max_wait_ms <= 0:
        return None
    return Batcher(model.probabilities, batch_size=settings.batch_size * GATHER_BATCHES,
                   max_wait=settings.max_wait_ms / 1000, unit=settings.batch_size)


runtime = TierRuntime(tier=2, decide=decide_tier2, loader=load_for_worker, batching=batching,
                      preload=import_model_code)
app = runtime.app


@app.task(name=TASK_TIER2, shared=False)  # not put into other apps (e.g. a process importing both tiers)
def classify(payload: dict) -> dict:
    return runtime.run(payload)
