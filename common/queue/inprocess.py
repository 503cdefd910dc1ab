"""The cascade in this process, beside the cluster's, with its audit and calibration: what ``tango label`` runs.

The corpus is streamed through ``common.cascade.Cascade`` (the routing rule the
workers apply) in chunks, so memory stays flat in the corpus size. Each piece
mirrors a cluster job item for item, keyed by the same seed (a job id):

- the audit: the big model also runs on the accepted items that
  ``common.sampling.audit_mask`` picks by input position, in a batch of its own
  per chunk as the cluster's tier 2 does, so the labels written are unchanged;
- the calibration (a quality target): the sample ``common.sampling.calibration_sample``
  draws goes through both tiers, chunked alone as the cluster feeds it; tier
  2's labels are those items' results, and ``common.guarantee.certify_target``
  fixes the threshold from their triples; the rest is then chunked without
  the sample, so every model batch holds the items a cluster's would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from common.cascade import TIER_BIG, TIER_SMALL, Cascade, answers, run_single
from common.data.batches import pair_texts
from common.data.corpus import Item
from common.errors import GuaranteeError
from common.labels import gold_names
from common.queue.results import ResultRecord
from common.sampling import audit_mask, calibration_sample


@dataclass
class Tally:
    """What a run decided: items written and how many of them tier 2 answered."""

    items: int = 0
    tier2: int = 0


@dataclass
class LabelAudit:
    """The cluster's audit in this process: the big model on the sample ``key`` draws of the accepted items."""

    key: str
    rate: float
    audited: int = 0
    agreed: int = 0

    def check(self, cascade: Cascade, output, positions: np.ndarray, texts: Sequence[str],
              pairs: Sequence[str] | None) -> None:
        """Check one chunk's accepted items that the sample picks; ``positions`` are the items' input positions."""
        accepted = np.flatnonzero(output.tiers == TIER_SMALL)
        picked = accepted[audit_mask(self.key, positions[accepted], self.rate)]
        if not len(picked):
            return
        probs = cascade.big.probabilities([texts[i] for i in picked], [pairs[i] for i in picked] if pairs else None)
        big_ids, _ = answers(probs, cascade.alignment.big_to_canonical)
        self.audited += len(picked)
        self.agreed += int((big_ids == output.label_ids[picked]).sum())

    def report(self, accepted: int, escalated: int):
        """The audit's estimate for these counts (``common.queue.audit.AuditReport``)."""
        from common.queue.audit import audit_report

        return audit_report(self.rate, accepted, escalated, self.audited, self.agreed)

    def describe(self, accepted: int, escalated: int) -> str:
        """The lines ``tango status`` shows for a job, for this run."""
        lines = self.report(accepted, escalated).lines()
        return "\n".join([*lines, f"audit key {self.key} (--seed {self.key} draws the same sample)"])


@dataclass
class Calibration:
    """The sample's triples (input order) and its final results: tier 2's answers."""

    positions: np.ndarray
    confidence: np.ndarray
    small_ids: np.ndarray
    big_ids: np.ndarray
    gold_ids: np.ndarray | None
    records: dict[int, ResultRecord] = field(default_factory=dict)


def texts_of(batch: Sequence[Item]) -> tuple[list[str], list[str] | None]:
    """A batch's texts and, where any item has a second text, its pairs (``pair_texts``)."""
    return [item.text for item in batch], pair_texts(batch)


def pick_sample(items: Iterable[Item], total: int, size: int, seed: str) -> list[tuple[int, Item]]:
    """The calibration sample's (position, item) pairs, in input order, in one streaming pass."""
    wanted = calibration_sample(total, size, seed)
    picked: list[tuple[int, Item]] = []
    for position, item in enumerate(items):
        if len(picked) < len(wanted) and position == wanted[len(picked)]:
            picked.append((position, item))
    return picked


def calibrate(cascade: Cascade, sample: list[tuple[int, Item]], chunk_size: int, big_name: str,
              gold: np.ndarray | None = None) -> Calibration:
    """Both tiers on every sample item, chunked as the cluster feeds them (``gold``: ``sample_gold``'s ids)."""
    labels = cascade.alignment.labels
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    records: dict[int, ResultRecord] = {}
    for start in range(0, len(sample), chunk_size):
        chunk = sample[start:start + chunk_size]
        texts, pairs = texts_of([item for _, item in chunk])
        small_ids, confidence = answers(cascade.small.probabilities(texts, pairs), cascade.alignment.small_to_canonical)
        big_ids, scores = answers(cascade.big.probabilities(texts, pairs), cascade.alignment.big_to_canonical)
        parts.append((confidence, small_ids, big_ids))
        for (position, item), label_id, score in zip(chunk, big_ids.tolist(), scores.tolist()):
            records[position] = ResultRecord(item.id, labels[label_id], score, TIER_BIG, big_name)
    joined = [np.concatenate(p) if p else np.zeros(0) for p in zip(*parts)] if parts else [np.zeros(0)] * 3
    return Calibration(np.array([p for p, _ in sample], dtype=np.int64), *joined, gold, records)


def sample_gold(sample: list[tuple[int, Item]], labels: Sequence[str]) -> np.ndarray:
    """--max-drop certifies against gold labels: every sample item needs one (checked before any model runs)."""
    ids = []
    for _, item in sample:
        name = gold_names(item.label, list(labels)) if item.label is not None else None
        if name is None:
            raise GuaranteeError(f"--max-drop needs a gold label on every calibration item: line {item.line} "
                                 f"(id {item.id!r}) has none in the label column")
        ids.append(list(labels).index(name))
    return np.asarray(ids, dtype=np.int64)


def label_items(cascade: Cascade, items: Iterator[Item], names: tuple[str, str], tally: Tally, chunk_size: int,
                audit: LabelAudit | None = None, fixed: dict[int, ResultRecord] | None = None
                ) -> Iterator[ResultRecord]:
    """Yield a ``ResultRecord`` per item in input order, running the cascade one chunk at a time.

    ``fixed`` holds results already known by input position (a calibration
    sample's): they are written in their place and left out of the chunks.
    """
    fixed = fixed or {}
    held: list[tuple[int, Item]] = []  # every item since the last chunk ran, in order
    todo = 0
    for position, item in enumerate(items):
        held.append((position, item))
        todo += position not in fixed
        if todo == chunk_size:
            yield from _flush(cascade, held, names, tally, audit, fixed)
            held, todo = [], 0
    if held:
        yield from _flush(cascade, held, names, tally, audit, fixed)


def _flush(cascade: Cascade, held: list[tuple[int, Item]], names: tuple[str, str], tally: Tally,
           audit: LabelAudit | None, fixed: dict[int, ResultRecord]) -> Iterator[ResultRecord]:
    run = [(position, item) for position, item in held if position not in fixed]
    decided: dict[int, ResultRecord] = {}
    if run:
        texts, pairs = texts_of([item for _, item in run])
        output = _run(cascade, texts, pairs)
        if audit:
            audit.check(cascade, output, np.array([p for p, _ in run], dtype=np.int64), texts, pairs)
        for (position, item), record in zip(run, output.records()):
            decided[position] = ResultRecord(item.id, record["label"], record["score"], record["tier"],
                                             names[record["tier"] - 1])
    for position, _ in held:
        record = fixed.get(position) or decided[position]
        tally.items += 1
        tally.tier2 += record.tier == TIER_BIG
        yield record


def _run(cascade: Cascade, texts: list[str], pairs: list[str] | None):
    """The cascade on one chunk; at threshold 1.0 the big model alone, since no tier-1 answer can stand."""
    if cascade.threshold >= 1.0:
        alignment = cascade.alignment
        return run_single(cascade.big, alignment.big_to_canonical, alignment.labels, texts, pairs)
    return cascade.run(texts, pairs)
