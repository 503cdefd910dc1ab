"""Threshold sweeps: what every confidence threshold would give, from one run of each model.

Both tiers run once over the data; every threshold's cascade is then simulated
from those outputs (an item's label is the small model's where it is confident,
else the big model's), so a full sweep costs no more inference than one
evaluation. Speedup uses the measured per-item costs of each tier:
``big / (small + tier2_fraction x big)`` -- the cascade's time with no overhead.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.cascade import escalate_mask, ideal_speedup
from common.errors import ConfigError
from common.metrics import accuracy

log = logging.getLogger(__name__)

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class SweepRow:
    """The simulated cascade at one threshold."""

    threshold: float
    metric: float
    tier2_fraction: float
    speedup: float


@dataclass
class SweepResult:
    """A full sweep plus the reference points a reader compares it with."""

    rows: list[SweepRow]
    metric_name: str
    big_metric: float
    small_metric: float
    small_seconds_per_item: float
    big_seconds_per_item: float
    max_drop: float
    recommended: SweepRow | None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["recommended"] = asdict(self.recommended) if self.recommended else None
        return data


def accuracy_points(preds: np.ndarray, refs: np.ndarray) -> float:
    """Accuracy in points (0-100): the sweep's budgets and drops are in points."""
    return 100.0 * accuracy(preds, refs)


def candidate_thresholds(small_probs: np.ndarray, steps: int = 200, max_points: int = 2000) -> np.ndarray:
    """A grid from the lowest meaningful threshold (1/k) to 1.0, plus the observed confidences.

    The distinct confidences are where the escalated set changes, so the grid
    never misses the best threshold on small sets; on large sets quantiles keep
    the sweep linear. The regular grid keeps plots smooth.
    """
    k = small_probs.shape[1]
    confidence = np.unique(small_probs.max(axis=1))
    if len(confidence) > max_points:
        confidence = np.quantile(confidence, np.linspace(0.0, 1.0, max_points))
    grid = np.linspace(1.0 / k, 1.0, steps)
    return np.unique(np.clip(np.concatenate([grid, confidence, [1.0]]), 1.0 / k, 1.0))


def sweep(small_probs: np.ndarray, big_preds: np.ndarray, refs: np.ndarray, small_seconds_per_item: float,
          big_seconds_per_item: float, metric: Metric = accuracy_points, metric_name: str = "accuracy",
          max_drop: float = 0.5, thresholds: Sequence[float] | None = None) -> SweepResult:
    """Simulate the cascade at every threshold and recommend one.

    ``small_probs`` are the (calibrated) small-tier probabilities, ``big_preds``
    the big tier's label ids in the same label space, ``refs`` the gold ids.
    ``max_drop`` is in the metric's own units (points for accuracy in %).
    """
    _check_inputs(small_probs, big_preds, refs, small_seconds_per_item, big_seconds_per_item, max_drop)
    small_preds = small_probs.argmax(axis=1)
    grid = candidate_thresholds(small_probs) if thresholds is None else np.asarray(sorted(thresholds))
    rows = []
    for threshold in grid:
        escalate = escalate_mask(small_probs, float(threshold))
        preds = np.where(escalate, big_preds, small_preds)
        fraction = float(escalate.mean())
        rows.append(SweepRow(float(threshold), float(metric(preds, refs)), fraction,
                             _speedup(small_seconds_per_item, big_seconds_per_item, fraction)))
    big_metric = float(metric(big_preds, refs))
    return SweepResult(rows, metric_name, big_metric, float(metric(small_preds, refs)), small_seconds_per_item,
                       big_seconds_per_item, max_drop, recommend(rows, big_metric, max_drop))


def _speedup(small_cost: float, big_cost: float, fraction: float) -> float:
    speedup = ideal_speedup(small_cost, big_cost, fraction)
    return float("inf") if speedup is None else speedup


def recommend(rows: Sequence[SweepRow], big_metric: float, max_drop: float) -> SweepRow | None:
    """The fastest threshold whose metric stays within ``max_drop`` of the big model alone.

    Ties in speedup go to the better metric, then to the higher threshold.
    """
    allowed = [r for r in rows if r.metric >= big_metric - max_drop - 1e-9]
    if not allowed:
        return None
    return max(allowed, key=lambda r: (r.speedup, r.metric, r.threshold))


def _check_inputs(small_probs: np.ndarray, big_preds: np.ndarray, refs: np.ndarray,
                  small_cost: float, big_cost: float, max_drop: float) -> None:
    if small_probs.ndim != 2 or small_probs.shape[1] < 2:
        raise ConfigError("a sweep needs a classifier with at least 2 labels")
    if not len(small_probs) == len(big_preds) == len(refs):
        raise ConfigError(f"sweep inputs differ in length: {len(small_probs)}, {len(big_preds)}, {len(refs)}")
    if len(refs) == 0:
        raise ConfigError("a sweep needs at least one labelled item")
    if small_cost < 0 or big_cost <= 0:
        raise ConfigError("per-item costs must be positive")
    if max_drop < 0:
        raise ConfigError(f"--max-drop must not be negative, got {max_drop}")


def write_csv(result: SweepResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["threshold", result.metric_name, "tier2_fraction", "speedup"])
        for row in result.rows:
            writer.writerow([f"{row.threshold:.6f}", f"{row.metric:.4f}", f"{row.tier2_fraction:.4f}",
                             f"{row.speedup:.4f}"])
    return path


def plot(result: SweepResult, path: str | Path, title: str = "") -> Path:
    """Two panels: metric and tier-2 fraction against threshold; metric against speedup."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    thresholds = [r.threshold for r in result.rows]
    metrics = [r.metric for r in result.rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(thresholds, metrics, color="tab:blue", label=result.metric_name)
    left.axhline(result.big_metric, color="tab:red", linestyle="--", label="big model alone")
    left.set_xlabel("confidence threshold")
    left.set_ylabel(result.metric_name)
    share = left.twinx()
    share.plot(thresholds, [r.tier2_fraction for r in result.rows], color="tab:orange", label="tier-2 fraction")
    share.set_ylabel("fraction sent to tier 2")
    share.set_ylim(0, 1.02)
    _legend(left, share)
    right.plot([r.speedup for r in result.rows], metrics, color="tab:blue", label="cascade")
    right.scatter([1.0], [result.big_metric], color="tab:red", zorder=3, label="big model alone")
    right.set_xlabel("speedup over the big model alone (x)")
    right.set_ylabel(result.metric_name)
    if result.recommended:
        for ax, x in ((left, result.recommended.threshold), (right, result.recommended.speedup)):
            ax.scatter([x], [result.recommended.metric], color="tab:green", marker="*", s=140, zorder=4,
                       label="recommended")
    right.legend(loc="lower left", fontsize=8)
    fig.suptitle(title or "cascade threshold sweep")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _legend(*axes) -> None:
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    axes[0].legend(handles, labels, loc="lower left", fontsize=8)


def format_row(row: SweepRow, metric_name: str) -> str:
    return (f"threshold {row.threshold:.4f}  {metric_name} {row.metric:.2f}  "
            f"tier-2 fraction {row.tier2_fraction:.3f}  speedup {row.speedup:.2f}x")


def recommendation_line(result: SweepResult) -> str:
    """The one line scripts grep for."""
    if result.recommended is None:
        return (f"recommended threshold: none (no threshold keeps {result.metric_name} within "
                f"{result.max_drop:g} of the big model's {result.big_metric:.2f}; use 1.0)")
    r = result.recommended
    return (f"recommended threshold {r.threshold:.4f}: {result.metric_name} {r.metric:.2f} "
            f"(big alone {result.big_metric:.2f}), tier-2 fraction {r.tier2_fraction:.3f}, "
            f"speedup {r.speedup:.2f}x")


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
             progress: bool = True) -> PairRun:
    """Run each tier once over all items (after a warm-up batch), timing each separately."""
    import time

    for model in (small, big):
        model.warm_up(texts, pairs)
    start = time.perf_counter()
    raw = small.probabilities(texts, pairs, progress="small model" if progress else None)
    small_seconds = time.perf_counter() - start
    start = time.perf_counter()
    big_probs = big.probabilities(texts, pairs, progress="big model" if progress else None)
    big_seconds = time.perf_counter() - start
    small_probs = np.empty_like(raw)
    small_probs[:, alignment.small_to_canonical] = raw
    return PairRun(small_probs, alignment.big_to_canonical[big_probs.argmax(axis=1)], small_seconds, big_seconds)
