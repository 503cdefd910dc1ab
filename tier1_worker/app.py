"""Tier 1's Celery app: the small model answers what it is sure of and sends the rest on.

The decision is ``common.queue.decisions.decide_tier1``; the uncertain items
leave as one ``tier2`` task, sent by name (tier 1 never imports tier 2's code)
before this task returns and is acknowledged, so none can be lost.
"""
from __future__ import annotations

from common.ml.models import import_model_code, load_for_worker
from common.queue.decisions import decide_tier1
from common.queue.messages import TASK_TIER1
from common.queue.runtime import TierRuntime

runtime = TierRuntime(tier=1, decide=decide_tier1, loader=load_for_worker, preload=import_model_code)
app = runtime.app


@app.task(name=TASK_TIER1, shared=False)  # not put into other apps (e.g. a process importing both tiers)
def classify(payload: dict) -> dict:
    return runtime.run(payload)
