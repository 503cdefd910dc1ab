"""A sweep's result and how it is reported: the rows, the recommendation line, the CSV and the plot.

``common.ml.sweep`` computes the result and certifies its recommendation; this module holds what the
result is made of and every way it is written out (matplotlib is imported only to draw the plot).
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

GUARANTEE, POINT, BUDGET = "guarantee", "point estimate", "budget"  # how a recommendation was chosen


@dataclass(frozen=True)
class SweepRow:
    """The simulated cascade at one threshold; ``loss`` and ``bound`` are in points."""

    threshold: float
    metric: float
    tier2_fraction: float
    speedup: float
    loss: float = 0.0  # estimated: the accuracy drop, or the disagreement with the big model
    bound: float = 0.0  # upper confidence bound on that loss at the sweep's confidence


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
    loss_name: str = "drop"
    confidence: float = 0.9
    rule: str = POINT  # how ``recommended`` was chosen: GUARANTEE, POINT or BUDGET
    max_tier2: float | None = None
    items: int = 0
    reason: str = ""  # why nothing is recommended, else ""
    calibration_overlap: int = 0  # items the small model's calibration was fitted on: figures are optimistic

    def as_dict(self) -> dict:
        data = asdict(self)
        data["recommended"] = asdict(self.recommended) if self.recommended else None
        return data

@dataclass(frozen=True)
class FoldRow:
    """One held-out fold: the threshold chosen on the other folds and what it did here."""

    fold: int
    fitted_on: int
    items: int
    threshold: float | None  # None: nothing recommended, so the big model alone
    drop: float  # points of the metric lost against the big model alone, on this fold
    speedup: float


@dataclass
class FoldReport:
    """K-fold check of the recommendation rule: does the threshold hold on items it was not chosen on?"""

    folds: list[FoldRow]
    metric_name: str
    max_drop: float
    calibration_overlap: int = 0

    @property
    def mean_drop(self) -> float:
        return float(np.mean([f.drop for f in self.folds]))

    @property
    def worst_drop(self) -> float:
        return float(max(f.drop for f in self.folds))

    def as_dict(self) -> dict:
        return {**asdict(self), "mean_drop": self.mean_drop, "worst_drop": self.worst_drop}

def write_csv(result: SweepResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["threshold", result.metric_name, "tier2_fraction", "speedup", "loss", "bound"])
        for row in result.rows:
            writer.writerow([f"{row.threshold:.6f}", f"{row.metric:.4f}", f"{row.tier2_fraction:.4f}",
                             f"{row.speedup:.4f}", f"{row.loss:.4f}", f"{row.bound:.4f}"])
    return path


def plot(result: SweepResult, path: str | Path, title: str = "") -> Path:
    """Three panels: metric and tier-2 fraction, then the loss and its bound, against threshold; metric
    against speedup."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    thresholds = [r.threshold for r in result.rows]
    metrics = [r.metric for r in result.rows]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.2))
    left.plot(thresholds, metrics, color="tab:blue", label=result.metric_name)
    left.axhline(result.big_metric, color="tab:red", linestyle="--", label="big model alone")
    left.set_xlabel("confidence threshold")
    left.set_ylabel(result.metric_name)
    share = left.twinx()
    share.plot(thresholds, [r.tier2_fraction for r in result.rows], color="tab:orange", label="tier-2 fraction")
    share.set_ylabel("fraction sent to tier 2")
    share.set_ylim(0, 1.02)
    _legend(left, share)
    middle.plot(thresholds, [r.loss for r in result.rows], color="tab:blue", label=f"{_loss_label(result)} (estimate)")
    middle.plot(thresholds, [r.bound for r in result.rows], color="tab:purple",
                label=f"upper bound at {percent(result.confidence)} confidence")
    middle.axhline(result.max_drop, color="tab:red", linestyle="--", label="--max-drop")
    middle.set_xlabel("confidence threshold")
    middle.set_ylabel("points")
    right.plot([r.speedup for r in result.rows], metrics, color="tab:blue", label="cascade")
    right.scatter([1.0], [result.big_metric], color="tab:red", zorder=3, label="big model alone")
    right.set_xlabel("speedup over the big model alone (x)")
    right.set_ylabel(result.metric_name)
    if result.recommended:
        best = result.recommended
        for ax, x, y in ((left, best.threshold, best.metric), (middle, best.threshold, best.bound),
                         (right, best.speedup, best.metric)):
            ax.scatter([x], [y], color="tab:green", marker="*", s=140, zorder=4, label="recommended")
    middle.legend(loc="upper right", fontsize=8)
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


def _loss_label(result: SweepResult) -> str:
    return "disagreement with the big model" if result.loss_name == "disagreement" else "accuracy drop"


def format_row(row: SweepRow, metric_name: str) -> str:
    return (f"threshold {row.threshold:.4f}  {metric_name} {row.metric:.2f}  "
            f"tier-2 fraction {row.tier2_fraction:.3f}  speedup {row.speedup:.2f}x  "
            f"loss {row.loss:.2f} (bound {row.bound:.2f})")


def recommendation_line(result: SweepResult) -> str:
    """The one line scripts grep for: the estimate and its bound, and which rule chose it."""
    if result.recommended is None:
        return f"recommended threshold: none ({result.reason}; run the big model alone, threshold 1.0)"
    r = result.recommended
    flag = _optimistic(result.calibration_overlap) if result.calibration_overlap else ""
    bound = f"at most {r.bound:.2f} at {percent(result.confidence)} confidence"
    rule = bound
    if result.rule == POINT:
        rule += f"; chosen on the point estimate of {result.metric_name}: the guarantee covers accuracy and agreement"
    elif result.rule == BUDGET:
        rule += f"; the most accurate with at most {result.max_tier2:g} to tier 2"
    return (f"recommended threshold {r.threshold:.4f}{flag}: {result.metric_name} {r.metric:.2f} "
            f"(big alone {result.big_metric:.2f}), {_loss_label(result)} {r.loss:.2f} points ({rule}), "
            f"tier-2 fraction {r.tier2_fraction:.3f}, speedup {r.speedup:.2f}x")


def format_fold(row: FoldRow, metric_name: str) -> str:
    chosen = "none (big model alone)" if row.threshold is None else f"{row.threshold:.4f}"
    return (f"fold {row.fold}: threshold {chosen} chosen on {row.fitted_on} items; on its {row.items} held-out "
            f"items {metric_name} drop {row.drop:.2f} points, speedup {row.speedup:.2f}x")


def fold_summary(report: FoldReport) -> str:
    line = (f"folds: mean drop {report.mean_drop:.2f}, worst drop {report.worst_drop:.2f} points "
            f"(budget {report.max_drop:g})")
    return line + (_optimistic(report.calibration_overlap) if report.calibration_overlap else "")


def _optimistic(overlap: int) -> str:
    return f" [optimistic: the calibration saw {overlap} of these items]"

def percent(fraction: float) -> str:
    return f"{100.0 * fraction:g}%"
