"""What a tier decides for one chunk: probabilities in, result records and forwarded items out.

Pure (numpy and the message types; no Redis, Celery or model), so the rule a
worker applies reads top to bottom and is tested without a cluster. Tier 1
keeps the items ``common.cascade.escalate_mask`` lets it answer (the one
routing rule, shared with the in-process cascade) and forwards the rest; tier
2's answer is final for every item it receives. Both answer in the job's label
ids, whatever order the worker's model lists its labels in.

A calibration chunk (a job's seeded sample, ``common.queue.calibration``): tier 1
answers nothing and forwards every item carrying its own answer (confidence and
label); tier 2's answer is each item's result, and the triple (tier-1 confidence,
tier-1 label, tier-2 label, gold) is kept for the job's threshold.

The audit: tier 1 also sends a seeded share (the chunk's ``audit`` rate) of the
items it answered to tier 2, marked with its own label; tier 2 turns those into
audit outcomes (agree or not), never results, since their answer is tier 1's.
The sample is ``common.sampling.audit_mask`` of the job and the item's input
position, so any worker, any chunking and ``tango label`` pick the same items.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from common.cascade import answers, escalate_mask
from common.labels import align_labels
from common.queue.messages import Chunk, WorkItem, calibration_answer
from common.queue.results import AuditOutcome, ResultRecord, gold_matches
from common.sampling import audit_mask

Entry = tuple[int, ResultRecord, "bool | None"]  # item index, its record, whether it matches its gold label
Triple = tuple[int, float, str, str, "str | None"]  # index, tier-1 confidence and label, tier-2 label, gold


@dataclass(frozen=True)
class Decision:
    entries: list[Entry]
    forward: list[WorkItem] = field(default_factory=list)  # tier 1: the unsure items, for tier 2 to answer
    audit: list[WorkItem] = field(default_factory=list)  # tier 1: answered items sent for tier 2 to check
    outcomes: list[AuditOutcome] = field(default_factory=list)  # tier 2: its checks of tier 1's answers
    triples: list[Triple] = field(default_factory=list)  # tier 2: a calibration chunk's items, both answers


Decide = Callable[[Chunk, np.ndarray, np.ndarray, str], Decision]


def output_map(job_labels: Sequence[str], model_names: Sequence[str]) -> np.ndarray:
    """The job's label id of each model output (generic ``LABEL_n`` names by index).

    Raises ``LabelMismatchError`` when the model speaks other labels than the job."""
    return align_labels(list(job_labels), list(model_names)).big_to_canonical


def decide_tier1(chunk: Chunk, probs: np.ndarray, outputs: np.ndarray, model: str) -> Decision:
    """Answer the items at or above the job's threshold; forward the rest to tier 2, and send the
    audit sample of the answered ones too, carrying tier 1's label (their answer stays tier 1's)."""
    label_ids, scores = answers(probs, outputs)
    if chunk.calibrate:
        return Decision([], [item._replace(calib=calibration_answer(score, chunk.labels[label]))
                             for item, label, score in zip(chunk.items, label_ids.tolist(), scores.tolist())])
    escalate = escalate_mask(probs, chunk.threshold)
    keep = np.flatnonzero(~escalate)
    confident = [chunk.items[i] for i in keep]
    entries = records(chunk, confident, label_ids[keep], scores[keep], 1, model)
    forward = [chunk.items[i] for i in np.flatnonzero(escalate)]
    return Decision(entries, forward, audit_sample(chunk, confident, [record.label for _, record, _ in entries]))


def audit_sample(chunk: Chunk, answered: Sequence[WorkItem], labels: Sequence[str]) -> list[WorkItem]:
    """The answered items the job's audit picks, each marked with the label tier 1 gave it."""
    if chunk.audit <= 0 or not answered:
        return []
    picked = audit_mask(chunk.job, np.array([item.index for item in answered], dtype=np.int64), chunk.audit)
    return [item._replace(audit=label) for item, label, pick in zip(answered, labels, picked) if pick]


def decide_tier2(chunk: Chunk, probs: np.ndarray, outputs: np.ndarray, model: str) -> Decision:
    """Answer every item: tier 2 is the last word; but an audit item only gets an outcome, whether
    tier 2 agrees with tier 1's label, because its answer is tier 1's and already stored."""
    label_ids, scores = answers(probs, outputs)
    check = np.array([item.audit is not None for item in chunk.items], dtype=bool)
    answer = np.flatnonzero(~check)
    outcomes = [AuditOutcome(chunk.items[n].index, chunk.items[n].audit, chunk.labels[int(label_ids[n])])
                for n in np.flatnonzero(check)]
    entries = records(chunk, [chunk.items[n] for n in answer], label_ids[answer], scores[answer], 2, model)
    triples = [(item.index, *item.tier1_answer(), record.label, item.gold)
               for item, (_, record, _) in zip(chunk.items, entries)] if chunk.calibrate else []
    return Decision(entries, outcomes=outcomes, triples=triples)


def records(chunk: Chunk, items: Sequence[WorkItem], label_ids: np.ndarray, scores: np.ndarray, tier: int,
            model: str) -> list[Entry]:
    """Result records for decided items, with whether each matches its gold label."""
    labels = list(chunk.labels)
    return [(item.index, ResultRecord(item.id, label, score, tier, model),
             None if item.gold is None else gold_matches(item.gold, label, labels))
            for item, label, score in zip(items, [labels[i] for i in label_ids.tolist()], scores.tolist())]
