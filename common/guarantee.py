"""A job's own quality promise: certify its threshold on a seeded sample of its corpus.

"Give me the big model's labels on at least 1 - D of my corpus, with
confidence C": a uniform sample of N_cal items goes through both tiers (tier
2's labels are their final results), and the lowest threshold whose sample
disagreement passes the finite-corpus test of ``common.wor_bounds`` is the
job's threshold for the rest. With probability at least C over the sample,
the rest's share of items where tier 1 accepts a label the big model would
not give is at most D, so the whole job's is at most D (N - N_cal) / N. With
gold labels on the sample (``loss="drop"``), the same holds for the harm
share (tier 1 accepts a wrong label where tier 2 is right), which bounds the
rest's accuracy drop against the big model alone, as ``tango sweep`` bounds it.

Pure numpy/scipy, so ``tango label`` (in process) and the cluster call the
same functions and pick the same threshold for the same seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from common.errors import GuaranteeError
from common.target import QualityTarget, calibration_value, check_target  # re-exported: callers import here
from common.risk import disagreement_losses, harm_losses
from common.sampling import calibration_sample
from common.wor_bounds import METHODS, allowed_count, rest_limit, rest_pvalue, rest_upper

__all__ = ["CalibrationPlan", "Guarantee", "QualityTarget", "calibration_sample", "certify", "check_sample_size",
           "check_target", "job_cost", "minimum_sample_size", "model_cost_ratio", "plan_calibration",
           "resolve_calibration", "threshold_grid", "DEFAULT_GRID"]

# Fixed before any data: even steps, then dense near 1.0 where confident models put most items.
DEFAULT_GRID = np.unique(np.concatenate([np.linspace(0.0, 1.0, 501), 1.0 - np.geomspace(1e-6, 0.5, 500), [1.0]]))
DEFAULT_COST_RATIO = 0.2  # tier 1's per-item cost over tier 2's when the models' shapes do not say


@dataclass(frozen=True)
class Guarantee:
    """The certified threshold and what it promises; ``threshold`` 1.0 means everything goes to tier 2."""

    threshold: float
    bound: float  # exact upper confidence bound on the rest's loss share at this threshold (<= max_loss)
    sample_size: int
    total: int
    max_loss: float  # D, a share
    confidence: float  # C
    tier2_share: float  # the sample's share escalated at the threshold: the rest's expected tier-2 share
    observed: int  # losses in the sample at the threshold
    allowed: int  # the most losses a certified threshold may show in the sample
    loss: str = "disagreement"
    method: str = "exact"

    @property
    def job_bound(self) -> float:
        """The whole corpus's share: the sample's items are tier 2's own answers."""
        return self.max_loss * (self.total - self.sample_size) / self.total

    def as_dict(self) -> dict:
        return {**asdict(self), "job_bound": self.job_bound}

    def describe(self) -> str:
        """The line ``label`` prints and ``status`` shows once the threshold is fixed."""
        what = "disagreement with the big model" if self.loss == "disagreement" else "accuracy drop"
        if self.threshold >= 1.0:
            return (f"threshold 1.0 (everything on tier 2): no lower threshold keeps the {what} within "
                    f"{self.max_loss:g} at {self.confidence:g} confidence on this sample")
        return (f"threshold {self.threshold:.10g}: {what} on the rest at most {self.bound:.4f} (target "
                f"{self.max_loss:g}) at {self.confidence:g} confidence; {self.observed} of {self.sample_size} "
                f"sample items over it (up to {self.allowed} allowed); expected tier-2 share {self.tier2_share:.1%}")


@dataclass(frozen=True)
class CalibrationPlan:
    """How many items to calibrate on, and what they are expected to cost and buy (in big-model item costs)."""

    size: int  # 0 when there is no gain: run everything on tier 2
    minimum: int  # the smallest sample that can certify anything at (D, C)
    cap: int
    sample_cost: float  # the sample through both tiers
    expected_cost: float  # the whole job, sample included; the big model alone costs ``total``
    expected_saving: float
    gain: bool
    reason: str = ""

    def describe(self, total: int) -> str:
        """What the sample costs against what it is expected to save, in big-model item costs."""
        if not self.size:
            return f"{self.reason}: running every item on tier 2"
        return (f"calibration sample {self.size} of {total} items through both tiers: it costs about "
                f"{self.sample_cost:.0f} big-model items; expected saving {self.expected_saving:.0f} of {total} "
                f"(the job about {self.expected_cost / total:.0%} of the big model alone)")


def minimum_sample_size(total: int, max_loss: float, confidence: float, method: str = "exact") -> int | None:
    """The smallest sample for which a threshold with no loss in it is certified; None if none below ``total``.

    Doubling then bisection on the sample size, each step one p-value at a
    zero count; the answer is checked, so a non-monotone corner only makes it
    larger, never invalid.
    """
    def ok(n: int) -> bool:
        rest = total - n
        return rest_pvalue(0, n, total, rest_limit(max_loss, rest), method) <= 1.0 - confidence

    if total < 2 or not ok(total - 1):
        return None
    lo, hi = 1, min(total - 1, max(1, int(np.log(1.0 / (1.0 - confidence)) / max_loss / 2)))
    while not ok(hi):
        lo, hi = hi + 1, min(total - 1, 2 * hi)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


def check_sample_size(size: int, total: int, max_loss: float, confidence: float, method: str = "exact",
                      loss: str = "disagreement") -> None:
    """A sample must leave a rest to label and be large enough for the bound to certify something."""
    check_target(max_loss, confidence, loss)
    _check_method(method)
    if not 0 < size < total:
        raise GuaranteeError(f"--calibration must be between 1 and {total - 1} (the corpus has {total} items), "
                             f"got {size}")
    if allowed_count(size, total, max_loss, 1.0 - confidence, method) < 0:
        need = minimum_sample_size(total, max_loss, confidence, method)
        hint = f"at least {need}" if need else "more items than the corpus has"
        raise GuaranteeError(f"--calibration {size} is too small to certify {max_loss:g} at {confidence:g} "
                             f"confidence: it needs {hint} (or --calibration auto)")


def certify(confidence: np.ndarray, small_ids: np.ndarray, big_ids: np.ndarray, total: int, max_loss: float,
            level: float, *, gold_ids: np.ndarray | None = None, loss: str = "disagreement",
            grid: np.ndarray | None = None, method: str = "exact") -> Guarantee:
    """Learn then Test on the sample's triples (tier-1 confidence, tier-1 label, tier-2 label[, gold]).

    Thresholds are tested from the most conservative down and the job takes
    the one that escalates the fewest sample items among those certified (ties
    to the higher threshold). Confidences are capped below 1.0, as in the
    sweep, so a threshold of 1.0 escalates everything, as the cascade does.
    """
    check_sample_size(len(confidence), total, max_loss, level, method, loss)
    if loss == "drop" and gold_ids is None:
        raise GuaranteeError("--max-drop needs gold labels on the calibration sample")
    grid = np.unique(np.append(DEFAULT_GRID if grid is None else np.asarray(grid, float), 1.0))
    scores = np.minimum(np.asarray(confidence, float), np.nextafter(1.0, 0.0))
    bad = (harm_losses(small_ids, big_ids, gold_ids, scores, grid) if loss == "drop"
           else disagreement_losses(small_ids, big_ids, scores, grid))
    counts = bad.sum(axis=1).astype(int)
    allowed = allowed_count(len(scores), total, max_loss, 1.0 - level, method)
    order = np.argsort(-grid, kind="stable")
    passed = np.zeros(len(grid), bool)
    passed[order] = np.cumprod(counts[order] <= allowed).astype(bool)
    escalated = (scores[None, :] < grid[:, None]).mean(axis=1)
    candidates = np.flatnonzero(passed)
    best = candidates[np.lexsort((-grid[candidates], escalated[candidates]))[0]]
    bound = rest_upper(int(counts[best]), len(scores), total, 1.0 - level)
    return Guarantee(float(grid[best]), bound, len(scores), int(total), float(max_loss), float(level),
                     float(escalated[best]), int(counts[best]), allowed, loss, method)


def certify_target(confidence: np.ndarray, small_ids: np.ndarray, big_ids: np.ndarray, total: int,
                   target: QualityTarget, num_labels: int, gold_ids: np.ndarray | None = None) -> Guarantee:
    """``certify`` as a job runs it: the user's target on the job's grid (what label, submit and sweep call)."""
    return certify(confidence, small_ids, big_ids, total, target.max_loss, target.confidence, gold_ids=gold_ids,
                   loss=target.loss, grid=threshold_grid(num_labels))


def job_cost(total: int, size: int, tier2_share: float, cost_ratio: float) -> float:
    """The job's cost in big-model item costs: the sample through both tiers, the rest through the cascade."""
    return size * (cost_ratio + 1.0) + (total - size) * (cost_ratio + tier2_share)


def plan_calibration(total: int, max_loss: float, confidence: float, cost_ratio: float, *, cap_share: float = 0.1,
                     prior_tier2: float = 0.4, slope: float = 0.3, method: str = "exact",
                     loss: str = "disagreement") -> CalibrationPlan:
    """``--calibration auto``: the sample size that minimises the job's expected cost, sample included.

    The rule. A sample of n can certify thresholds whose sample loss count is
    at most k*(n), so it uses the share u(n) = min(1, (k*(n) + 1) / (n D)) of
    the budget D; the rest's tier-2 share is modelled as ``prior_tier2`` (at
    the full budget) plus ``slope`` x (1 - u(n)), the price of the bound's
    slack; the slope is what halving D cost in tier-2 share on the pairs
    measured (bench/RESULTS.md section 19). The job then costs n (r + 1) +
    (N - n) (r + e(n)) big-model item costs (r = ``cost_ratio``, small over
    big), and n minimises that over a geometric grid from the smallest useful
    sample to ``cap_share`` of the corpus. Larger corpora afford larger
    samples, so the slack shrinks as the corpus grows. No gain (the cheapest
    plan costs at least N, the big model alone) or no useful sample under the
    cap: ``size`` 0, with the reason.
    """
    check_target(max_loss, confidence, loss)
    _check_method(method)
    if not 0.0 <= cost_ratio < 1.0 or not 0.0 < cap_share < 1.0:
        raise GuaranteeError(f"the cost ratio must be in [0, 1) and the cap in (0, 1), got {cost_ratio}, {cap_share}")
    cap = int(cap_share * total)
    minimum = minimum_sample_size(total, max_loss, confidence, method)
    if minimum is None or minimum > cap:
        need = "more items than the corpus has" if minimum is None else f"{minimum} items"
        return CalibrationPlan(0, minimum or total, cap, 0.0, float(total), 0.0, False,
                               f"corpus too small for any gain: certifying {max_loss:g} at {confidence:g} needs "
                               f"a sample of {need}, over {cap_share:.0%} of its {total}")
    sizes = np.unique(np.geomspace(minimum, cap, 48).astype(int))
    delta = 1.0 - confidence
    usable = np.array([min(1.0, (allowed_count(int(n), total, max_loss, delta, method) + 1) / (n * max_loss))
                       for n in sizes])
    share = np.minimum(1.0, prior_tier2 + slope * (1.0 - usable))
    costs = np.array([job_cost(total, int(n), s, cost_ratio) for n, s in zip(sizes, share)])
    best = int(np.argmin(costs))
    size, cost = int(sizes[best]), float(costs[best])
    sample_cost = size * (cost_ratio + 1.0)
    if cost >= total:
        return CalibrationPlan(0, minimum, cap, sample_cost, cost, total - cost, False,
                               f"corpus too small for any gain: a sample of {size} costs {sample_cost:.0f} "
                               f"big-model items and the job would cost {cost / total:.0%} of the big model alone")
    return CalibrationPlan(size, minimum, cap, sample_cost, cost, total - cost, True)


def resolve_calibration(value: str | int, total: int, max_loss: float, confidence: float, cost_ratio: float,
                        method: str = "exact", loss: str = "disagreement", **plan_options: float) -> CalibrationPlan:
    """``--calibration N|auto`` to a plan: N is checked as given, ``auto`` is planned."""
    size = calibration_value(value)
    if size is None:
        return plan_calibration(total, max_loss, confidence, cost_ratio, method=method, loss=loss, **plan_options)
    check_sample_size(size, total, max_loss, confidence, method, loss)
    minimum = minimum_sample_size(total, max_loss, confidence, method) or size
    cost = job_cost(total, size, plan_options.get("prior_tier2", 0.4), cost_ratio)
    reason = "" if cost < total else (f"a sample of {size} costs {size * (cost_ratio + 1.0):.0f} big-model items and "
                                      f"the job would cost about {cost / total:.0%} of the big model alone")
    return CalibrationPlan(size, minimum, total - 1, size * (cost_ratio + 1.0), cost, total - cost, cost < total,
                           reason)


def threshold_grid(num_labels: int) -> np.ndarray:
    """The grid a job certifies on: ``DEFAULT_GRID`` from 1/labels up, where every threshold is a valid
    cascade threshold (below it tier 1 accepts every item anyway)."""
    low = 1.0 / max(num_labels, 1)
    return np.unique(np.append(DEFAULT_GRID[DEFAULT_GRID >= low], low))


def model_cost_ratio(small_config: dict, big_config: dict) -> float:
    """Tier 1's per-item cost over tier 2's, from the models' shapes (what ``auto`` plans with).

    A transformer layer costs about 4h^2 + 2hi multiply-adds per token (the
    attention projections and the feed-forward block), and both tiers see the
    same tokens, so the ratio of those sums is the ratio of costs to first
    order. A pure function of the two configs, so ``label`` and ``submit``
    plan the same sample for the same pair; ``DEFAULT_COST_RATIO`` when a
    config lacks the fields; at most 0.99 (a tier 1 as costly as tier 2
    leaves no gain, which the plan then says).
    """
    def cost(config: dict) -> float | None:
        layers = config.get("num_hidden_layers", config.get("n_layers"))
        hidden = config.get("hidden_size", config.get("dim"))
        inner = config.get("intermediate_size", config.get("hidden_dim", 4 * hidden if hidden else None))
        if not all(isinstance(v, (int, float)) and v > 0 for v in (layers, hidden, inner)):
            return None
        return float(layers) * (4.0 * hidden * hidden + 2.0 * hidden * inner)

    small, big = cost(small_config), cost(big_config)
    if small is None or big is None:
        return DEFAULT_COST_RATIO
    return min(0.99, small / big)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise GuaranteeError(f"the bound must be one of {', '.join(METHODS)}, got {method!r}")
