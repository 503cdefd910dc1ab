"""Tier 1's task: answer the items the small model is sure of, send the rest on.

Confident items are written to the result store in one call; the uncertain
ones leave as one ``tier2`` task, sent by name (tier 1 never imports tier 2's
code) before this task returns and is acknowledged, so none can be lost.
"""
from __future__ import annotations

import numpy as np

from common.cascade import combine, escalate_mask
from common.labels import LabelAlignment
from common.messages import TASK_TIER1, Chunk
from common.worker import Decision, TierRuntime


def decide(runtime: TierRuntime, chunk: Chunk, probs: np.ndarray, alignment: LabelAlignment) -> Decision:
    """The cascade rule of ``common.cascade``, applied to one chunk."""
    escalate = escalate_mask(probs, chunk.threshold)
    label_ids, scores, _ = combine(probs, None, np.zeros(len(probs), dtype=bool), alignment)
    keep = np.flatnonzero(~escalate)
    confident = [chunk.items[i] for i in keep]
    forward = [chunk.items[i] for i in np.flatnonzero(escalate)]
    return runtime.entries(chunk, confident, label_ids[keep], scores[keep]), forward


runtime = TierRuntime(tier=1, decide=decide)
app = runtime.app


@app.task(name=TASK_TIER1, shared=False)  # not put into other apps (e.g. a process importing both tiers)
def classify(payload: dict) -> dict:
    return runtime.run(payload)
