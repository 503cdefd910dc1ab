"""Threshold sweeps: what every confidence threshold would give, and which one to trust.

Both tiers run once over the data; every threshold's cascade is then simulated
from those outputs (an item's label is the small model's where it is confident,
else the big model's), so a full sweep costs no more inference than one
evaluation. Speedup uses the measured per-item costs of each tier:
``big / (small + tier2_fraction x big)`` -- the cascade's time with no overhead.

Choosing a threshold. The threshold that looks best on a set of items is, by
selection, the one whose noise flattered it most, so "within 0.5 points" on the
items it was picked on over-promises on the next ones. The recommendation is
therefore certified with Learn then Test (Angelopoulos, Bates, Candes, Jordan,
Lei 2021): each threshold is a test of "loss > budget" with a Hoeffding-Bentkus
p-value (Bates, Angelopoulos, Lei, Malik, Jordan 2021), finite-sample and free
of distributional assumptions for losses in [0, 1]; the tests run from 1.0
(everything to tier 2) downwards and stop at the first failure. That order is
fixed before the data are seen, so fixed-sequence testing spends the whole
error budget on each test with no multiplicity correction, and the threshold
picked from hundreds keeps its promise: with probability at least
``confidence`` over the draw of the items, the recommended threshold's loss on
new items from the same distribution is within ``max_drop`` points. The grid
holds every observed confidence (or, on large sets, a fixed grid), and both
losses only grow as the threshold falls, so a data-dependent grid is as valid
as a continuum (the argument of Bates et al.'s risk-controlling sets).

Losses (``common.risk``): ``drop`` bounds the accuracy drop through the harm
loss (kept at tier 1, small wrong, big right), which is in {0, 1} and at least
the drop; ``disagreement`` (kept and small != big) needs no gold labels. F1 and
Matthews have no per-item loss, so for them the recommendation stays the point
estimate and says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from common.cascade import escalate_mask, ideal_speedup
from common.errors import ConfigError
from common.metrics import accuracy
from common.risk import (Selection, accuracy_drop_losses, budget_threshold, disagreement_losses, fastest_valid,
                         harm_losses, select_threshold)
from common.ml.sweep_report import (BUDGET, GUARANTEE, POINT, FoldReport, FoldRow, SweepResult, SweepRow, percent)

log = logging.getLogger(__name__)

Metric = Callable[[np.ndarray, np.ndarray], float]

LOSSES = ("drop", "disagreement")
AGREEMENT = "agreement with the big model"


def accuracy_points(preds: np.ndarray, refs: np.ndarray) -> float:
    """Accuracy in points (0-100): the sweep's budgets and drops are in points."""
    return 100.0 * accuracy(preds, refs)


def candidate_thresholds(small_probs: np.ndarray, steps: int = 200, max_points: int = 2000) -> np.ndarray:
    """A grid from the lowest meaningful threshold (1/k) to 1.0, plus the observed confidences.

    The distinct confidences are where the escalated set changes, so the grid
    never misses the best threshold on small sets. On large sets a fixed grid,
    dense near 1.0 where confident models put most items, keeps the sweep linear
    and independent of the data, which the guarantee then needs.
    """
    k = small_probs.shape[1]
    confidence = np.unique(small_probs.max(axis=1))
    if len(confidence) > max_points:
        confidence = np.concatenate([np.linspace(1.0 / k, 1.0, max_points // 2),
                                     1.0 - np.geomspace(1e-6, 1.0 - 1.0 / k, max_points // 2)])
    grid = np.linspace(1.0 / k, 1.0, steps)
    return np.unique(np.clip(np.concatenate([grid, confidence, [1.0]]), 1.0 / k, 1.0))


def sweep(small_probs: np.ndarray, big_preds: np.ndarray, refs: np.ndarray | None, small_seconds_per_item: float,
          big_seconds_per_item: float, metric: Metric = accuracy_points, metric_name: str = "accuracy",
          max_drop: float = 0.5, thresholds: Sequence[float] | None = None, confidence: float = 0.9,
          loss: str = "drop", max_tier2: float | None = None) -> SweepResult:
    """Simulate the cascade at every threshold and recommend one.

    ``small_probs`` are the (calibrated) small-tier probabilities, ``big_preds``
    the big tier's label ids in the same label space, ``refs`` the gold ids, or
    None for unlabelled items: the metric is then agreement with the big model
    and the loss disagreement. ``max_drop`` is in points. The recommendation is
    the fastest threshold whose loss is certified within ``max_drop`` at
    ``confidence`` (the point estimate for metrics other than accuracy under
    ``loss="drop"``), or with ``max_tier2`` the lowest estimated loss that sends
    at most that share to tier 2.
    """
    _check_inputs(small_probs, big_preds, refs, small_seconds_per_item, big_seconds_per_item, max_drop)
    _check_options(confidence, loss, max_tier2)
    if refs is None:
        refs, metric, metric_name, loss = big_preds, accuracy_points, AGREEMENT, "disagreement"
    small_preds = small_probs.argmax(axis=1)
    grid = candidate_thresholds(small_probs) if thresholds is None else np.asarray(sorted(thresholds), float)
    top = small_probs.max(axis=1, keepdims=True)  # escalate_mask's own rule, on confidences taken once
    escalated = np.stack([escalate_mask(top, float(t)) for t in grid])
    estimate, selection = _certify(loss, small_probs, small_preds, big_preds, refs, grid, max_drop, confidence)
    rows = [SweepRow(float(t), float(metric(np.where(e, big_preds, small_preds), refs)), float(e.mean()),
                     _speedup(small_seconds_per_item, big_seconds_per_item, float(e.mean())),
                     100.0 * float(est), 100.0 * float(up))
            for t, e, est, up in zip(grid, escalated, estimate, selection.upper)]
    big_metric = float(metric(big_preds, refs))
    rule = BUDGET if max_tier2 is not None else GUARANTEE if _guaranteed(loss, metric_name) else POINT
    result = SweepResult(rows, metric_name, big_metric, float(metric(small_preds, refs)), small_seconds_per_item,
                         big_seconds_per_item, max_drop, None, loss, confidence, rule, max_tier2, len(refs))
    result.recommended = _pick(result, selection, estimate)
    result.reason = "" if result.recommended else _no_recommendation(result, bool(selection.valid.any()))
    return result


def _pick(result: SweepResult, selection: Selection, estimate: np.ndarray) -> SweepRow | None:
    """The row ``result.rule`` picks; a cascade no faster than the big model alone is never worth recommending,
    unless the caller's constraint is tier-2 capacity."""
    shares = np.asarray([r.tier2_fraction for r in result.rows])
    if result.rule == POINT:
        best = recommend(result.rows, result.big_metric, result.max_drop)
    else:
        index = (budget_threshold(shares, estimate, result.max_tier2) if result.rule == BUDGET
                 else fastest_valid(selection, shares))
        best = None if index is None else result.rows[index]
    return best if best is not None and (result.rule == BUDGET or best.speedup > 1.0) else None


def _guaranteed(loss: str, metric_name: str) -> bool:
    """The bound is on accuracy (via harm) or on disagreement: it says nothing of F1 or Matthews."""
    return loss == "disagreement" or metric_name == "accuracy"


def _certify(loss: str, small_probs: np.ndarray, small_preds: np.ndarray, big_preds: np.ndarray, refs: np.ndarray,
             grid: np.ndarray, max_drop: float, confidence: float) -> tuple[np.ndarray, Selection]:
    """Per threshold: the estimated loss (fraction) and the Learn-then-Test selection on the bounded loss.

    risk's losses keep an item when its confidence is >= the threshold, while the
    cascade escalates everything at 1.0, even confidences that rounded to 1.0;
    capping confidences at the largest double below 1.0 makes the two rules agree
    at every threshold.
    """
    scores = np.minimum(small_probs.max(axis=1), np.nextafter(1.0, 0.0))
    if loss == "disagreement":
        bounded = disagreement_losses(small_preds, big_preds, scores, grid)
        estimate = bounded.mean(axis=1)
    else:
        bounded = harm_losses(small_preds, big_preds, refs, scores, grid)
        estimate = accuracy_drop_losses(small_preds, big_preds, refs, scores, grid).mean(axis=1)
    return estimate, select_threshold(bounded, grid, max_drop / 100.0, 1.0 - confidence, lower=0.0)


def _no_recommendation(result: SweepResult, any_certified: bool) -> str:
    """One plain sentence: what was asked for, on how many items, and (when it is so) that they are too few."""
    items = f"on these {result.items} items"
    if result.rule == BUDGET:
        return f"no threshold sends at most {result.max_tier2:g} of the items to tier 2 {items}"
    if result.rule == POINT:
        return (f"no threshold beats the big model alone within {result.max_drop:g} points of "
                f"{result.metric_name} {items} (point estimate)")
    reason = (f"no threshold beats the big model alone within {result.max_drop:g} points at "
              f"{percent(result.confidence)} confidence {items}")
    if not any_certified:
        reason += ": too few to certify even the big model alone, use more items or a larger --max-drop"
    return reason


def _speedup(small_cost: float, big_cost: float, fraction: float) -> float:
    speedup = ideal_speedup(small_cost, big_cost, fraction)
    return float("inf") if speedup is None else speedup


def recommend(rows: Sequence[SweepRow], big_metric: float, max_drop: float) -> SweepRow | None:
    """The point-estimate rule: the fastest threshold whose metric stays within ``max_drop`` of the big model.

    Ties in speedup go to the better metric, then to the higher threshold. Kept
    for metrics with no per-item loss to bound (F1, Matthews).
    """
    allowed = [r for r in rows if r.metric >= big_metric - max_drop - 1e-9]
    if not allowed:
        return None
    return max(allowed, key=lambda r: (r.speedup, r.metric, r.threshold))


def _check_inputs(small_probs: np.ndarray, big_preds: np.ndarray, refs: np.ndarray | None,
                  small_cost: float, big_cost: float, max_drop: float) -> None:
    if small_probs.ndim != 2 or small_probs.shape[1] < 2:
        raise ConfigError("a sweep needs a classifier with at least 2 labels")
    lengths = [len(small_probs), len(big_preds)] + ([] if refs is None else [len(refs)])
    if len(set(lengths)) > 1:
        raise ConfigError(f"sweep inputs differ in length: {', '.join(map(str, lengths))}")
    if lengths[0] == 0:
        raise ConfigError("a sweep needs at least one item")
    if small_cost < 0 or big_cost <= 0:
        raise ConfigError("per-item costs must be positive")
    if max_drop < 0:
        raise ConfigError(f"--max-drop must not be negative, got {max_drop}")


def _check_options(confidence: float, loss: str, max_tier2: float | None) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"--confidence must be between 0 and 1 (exclusive), got {confidence}")
    if loss not in LOSSES:
        raise ConfigError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if max_tier2 is not None and not 0.0 <= max_tier2 <= 1.0:
        raise ConfigError(f"--max-tier2 must be a share between 0 and 1, got {max_tier2}")


def fold_sweep(small_probs: np.ndarray, big_preds: np.ndarray, refs: np.ndarray | None, small_seconds_per_item: float,
               big_seconds_per_item: float, folds: int = 5, seed: int = 0, **options: Any) -> FoldReport:
    """Choose a threshold on K-1 seeded folds with ``sweep``'s rule (``options``), measure it on the K-th."""
    if not 2 <= folds <= len(big_preds):
        raise ConfigError(f"--folds must be between 2 and the number of items ({len(big_preds)}), got {folds}")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(big_preds)), folds)
    rows = []
    for number, held in enumerate(parts, 1):
        fit = np.setdiff1d(np.arange(len(big_preds)), held)
        chosen = sweep(small_probs[fit], big_preds[fit], None if refs is None else refs[fit],
                       small_seconds_per_item, big_seconds_per_item, **options).recommended
        threshold = None if chosen is None else chosen.threshold
        test = sweep(small_probs[held], big_preds[held], None if refs is None else refs[held], small_seconds_per_item,
                     big_seconds_per_item, **{**options, "max_tier2": None}, thresholds=[threshold or 1.0])
        row = test.rows[0]
        drop, speedup = (test.big_metric - row.metric, row.speedup) if chosen else (0.0, 1.0)
        rows.append(FoldRow(number, len(fit), len(held), threshold, drop, speedup))
    return FoldReport(rows, test.metric_name, float(options.get("max_drop", 0.5)))


@dataclass
class PairRun:
    """Both tiers' outputs on the same items, in canonical label order, with their timings."""

    small_probs: np.ndarray
    big_preds: np.ndarray
    small_seconds: float
    big_seconds: float

    @property
    def items(self) -> int:
        return len(self.big_preds)

    def per_item(self) -> tuple[float, float]:
        return self.small_seconds / self.items, self.big_seconds / self.items


def run_pair(small, big, alignment, texts: Sequence[str], pairs: Sequence[str] | None,
             progress: bool = True, chunk_size: int | None = None) -> PairRun:
    """Run each tier once over all items (after a warm-up batch), timing each separately.

    ``chunk_size``: score the items in runs of that many, as a job's chunks
    are, so every model batch (formed by length within a call) holds the items
    the job's would and the confidences match it to the last digit.
    """
    import time

    for model in (small, big):
        model.warm_up(texts, pairs)
    start = time.perf_counter()
    raw = _chunked(small, texts, pairs, chunk_size, "small model" if progress else None)
    small_seconds = time.perf_counter() - start
    start = time.perf_counter()
    big_probs = _chunked(big, texts, pairs, chunk_size, "big model" if progress else None)
    big_seconds = time.perf_counter() - start
    small_probs = np.empty_like(raw)
    small_probs[:, alignment.small_to_canonical] = raw
    return PairRun(small_probs, alignment.big_to_canonical[big_probs.argmax(axis=1)], small_seconds, big_seconds)


def _chunked(model, texts: Sequence[str], pairs: Sequence[str] | None, size: int | None,
             progress: str | None) -> np.ndarray:
    if not size or size >= len(texts):
        return model.probabilities(texts, pairs, progress=progress)
    return np.concatenate([model.probabilities(texts[s:s + size], pairs[s:s + size] if pairs else None,
                                               progress=progress) for s in range(0, len(texts), size)])
