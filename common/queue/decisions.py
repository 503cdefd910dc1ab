"""What a tier decides for one chunk: probabilities in, result records and forwarded items out.

Pure (numpy and the message types; no Redis, Celery or model), so the rule a
worker applies reads top to bottom and is tested without a cluster. Tier 1
keeps the items ``common.cascade.escalate_mask`` lets it answer (the one
routing rule, shared with the in-process cascade) and forwards the rest; tier
2's answer is final for every item it receives. Both answer in the job's label
ids, whatever order the worker's model lists its labels in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from common.cascade import answers, escalate_mask
from common.labels import align_labels
from common.queue.messages import Chunk, WorkItem
from common.queue.results import ResultRecord, gold_matches

Entry = tuple[int, ResultRecord, "bool | None"]  # item index, its record, whether it matches its gold label


@dataclass(frozen=True)
class Decision:
    entries: list[Entry]
    forward: list[WorkItem] = field(default_factory=list)


Decide = Callable[[Chunk, np.ndarray, np.ndarray, str], Decision]


def output_map(job_labels: Sequence[str], model_names: Sequence[str]) -> np.ndarray:
    """The job's label id of each model output (generic ``LABEL_n`` names by index).

    Raises ``LabelMismatchError`` when the model speaks other labels than the job."""
    return align_labels(list(job_labels), list(model_names)).big_to_canonical


def decide_tier1(chunk: Chunk, probs: np.ndarray, outputs: np.ndarray, model: str) -> Decision:
    """Answer the items at or above the job's threshold; forward the rest to tier 2."""
    escalate = escalate_mask(probs, chunk.threshold)
    label_ids, scores = answers(probs, outputs)
    keep = np.flatnonzero(~escalate)
    confident = [chunk.items[i] for i in keep]
    forward = [chunk.items[i] for i in np.flatnonzero(escalate)]
    return Decision(records(chunk, confident, label_ids[keep], scores[keep], 1, model), forward)


def decide_tier2(chunk: Chunk, probs: np.ndarray, outputs: np.ndarray, model: str) -> Decision:
    """Answer every item: tier 2 is the last word."""
    label_ids, scores = answers(probs, outputs)
    return Decision(records(chunk, list(chunk.items), label_ids, scores, 2, model))


def records(chunk: Chunk, items: Sequence[WorkItem], label_ids: np.ndarray, scores: np.ndarray, tier: int,
            model: str) -> list[Entry]:
    """Result records for decided items, with whether each matches its gold label."""
    labels = list(chunk.labels)
    out: list[Entry] = []
    for item, label_id, score in zip(items, label_ids, scores):
        label = labels[int(label_id)]
        record = ResultRecord(item.id, label, float(score), tier, model)
        out.append((item.index, record, None if item.gold is None else gold_matches(item.gold, label, labels)))
    return out
