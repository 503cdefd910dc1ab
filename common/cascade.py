"""The cascade decision: which items tier 1 may answer, and the combined result.

Pure numpy; the in-process ``Cascade`` and both Celery workers call these same
functions, so the routing rule exists exactly once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from common.errors import ConfigError
from common.labels import LabelAlignment

TIER_SMALL = 1
TIER_BIG = 2


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis, after dividing by ``temperature``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def validate_threshold(threshold: float, num_labels: int | None, option: str = "--confidence_threshold") -> float:
    """A threshold below ``1/num_labels`` can never be missed, above 1.0 never met; ``option`` is the
    name the user typed it under. ``num_labels`` None: not known yet, any share in (0, 1]."""
    if num_labels is None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"{option} must be between 0 (exclusive) and 1.0, got {threshold}")
        return float(threshold)
    if num_labels < 2:
        raise ConfigError("the cascade needs a classifier with at least 2 labels "
                          "(confidence is undefined for regression heads such as STS-B)")
    low = 1.0 / num_labels
    if not (low - 1e-9 <= threshold <= 1.0):
        raise ConfigError(f"{option} must be between {low:.4g} and 1.0 "
                          f"for {num_labels} labels, got {threshold}")
    return float(threshold)


def validate_audit_rate(rate: float, option: str = "--audit") -> float:
    """An audit rate is a share of tier 1's answers: outside [0, 1] it means nothing."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{option} must be between 0 and 1 (a share of tier 1's answers), got {rate}")
    return float(rate)


def ideal_speedup(small_seconds: float, big_seconds: float, tier2_fraction: float) -> float | None:
    """big / (small + fraction x big): what a cascade with no overhead would achieve.

    Works on totals or per-item costs alike, since it is a ratio.
    """
    cost = small_seconds + tier2_fraction * big_seconds
    return big_seconds / cost if cost > 0 else None


def escalate_mask(probs: np.ndarray, threshold: float) -> np.ndarray:
    """True where an item goes on to tier 2: its confidence is below the threshold.

    Confidence is the max softmax probability. A threshold of 1.0 escalates
    everything, even items whose probability rounded to exactly 1.0, so that
    1.0 always means "big model only".
    """
    confidence = probs.max(axis=-1)
    if threshold >= 1.0:
        return np.ones(len(confidence), dtype=bool)
    return confidence < threshold


@dataclass
class CascadeOutput:
    """Per-item decisions plus the timings the reports need."""

    labels: list[str]
    label_ids: np.ndarray  # index into ``labels`` per item
    scores: np.ndarray  # confidence of the tier that decided
    tiers: np.ndarray  # 1 or 2 per item
    small_seconds: float = 0.0
    big_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.small_seconds + self.big_seconds

    @property
    def tier2_fraction(self) -> float:
        return float((self.tiers == TIER_BIG).mean()) if len(self.tiers) else 0.0

    def records(self) -> list[dict]:
        """One ``{label, score, tier}`` dict per item, in input order."""
        return [{"label": self.labels[int(i)], "score": float(s), "tier": int(t)}
                for i, s, t in zip(self.label_ids, self.scores, self.tiers)]


def answers(probs: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's answer as a canonical label id (``outputs`` maps model outputs to them) and its score."""
    return outputs[probs.argmax(axis=-1)], probs.max(axis=-1)


def combine(small_probs: np.ndarray, big_probs: np.ndarray | None, escalate: np.ndarray,
            alignment: LabelAlignment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge tier-1 answers with tier-2 answers for the escalated rows.

    ``big_probs`` holds rows for the escalated items only, in their order.
    Returns canonical label ids, scores and tiers per item.
    """
    label_ids, scores = answers(small_probs, alignment.small_to_canonical)
    tiers = np.full(len(small_probs), TIER_SMALL, dtype=np.int8)
    if escalate.any():
        assert big_probs is not None and len(big_probs) == int(escalate.sum())
        label_ids[escalate], scores[escalate] = answers(big_probs, alignment.big_to_canonical)
        tiers[escalate] = TIER_BIG
    return label_ids, scores, tiers


class Cascade:
    """Tier 1 on every item, tier 2 on the ones tier 1 is unsure of, in one process."""

    def __init__(self, small, big, threshold: float, alignment: LabelAlignment) -> None:
        self.small = small
        self.big = big
        self.alignment = alignment
        self.threshold = validate_threshold(threshold, small.num_labels)

    def run(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
            progress: bool = False) -> CascadeOutput:
        start = time.perf_counter()
        small_probs = self.small.probabilities(texts, pairs, progress="tier 1" if progress else None)
        small_seconds = time.perf_counter() - start
        escalate = escalate_mask(small_probs, self.threshold)
        index = np.flatnonzero(escalate)
        start = time.perf_counter()
        big_probs = None
        if len(index):
            big_probs = self.big.probabilities([texts[i] for i in index],
                                               [pairs[i] for i in index] if pairs else None,
                                               progress="tier 2" if progress else None)
        big_seconds = time.perf_counter() - start
        label_ids, scores, tiers = combine(small_probs, big_probs, escalate, self.alignment)
        return CascadeOutput(self.alignment.labels, label_ids, scores, tiers, small_seconds, big_seconds)


def run_single(model, alignment_map: np.ndarray, labels: list[str], texts: Sequence[str],
               pairs: Sequence[str] | None = None, progress: str | None = None,
               tier: int = TIER_BIG) -> CascadeOutput:
    """One model alone on every item, reported in the cascade's terms (for --compare)."""
    start = time.perf_counter()
    probs = model.probabilities(texts, pairs, progress=progress)
    seconds = time.perf_counter() - start
    label_ids, scores = answers(probs, alignment_map)
    out = CascadeOutput(labels, label_ids, scores, np.full(len(probs), tier, dtype=np.int8))
    if tier == TIER_BIG:
        out.big_seconds = seconds
    else:
        out.small_seconds = seconds
    return out
