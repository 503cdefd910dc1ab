"""Finite-sample guarantees for the cascade: pick a threshold, then audit the running job.

A threshold tuned on a calibration set by eye over-promises: the best-looking
threshold is, by selection, the one whose noise flattered it most. Learn then
Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021) turns the choice into
hypothesis tests, one per threshold, of "risk > budget"; the p-values come from
the Hoeffding-Bentkus bound (Bates, Angelopoulos, Lei, Malik, Jordan 2021),
which holds for any loss in [0, 1] with no distributional assumption. Ordering
the tests from the most to the least conservative threshold before seeing the
data (fixed-sequence testing) spends the whole error budget delta on each test
with no multiplicity correction. Audits of a live job use exact Clopper-Pearson
intervals (Clopper, Pearson 1934), which never under-cover.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

_BISECT_STEPS = 60
_EDGE = 1e-12


def _check_unit(name: str, value: float, *, open_: bool = False) -> None:
    """Reject out-of-range probabilities early: scipy would silently return nan."""
    ok = 0.0 < value < 1.0 if open_ else 0.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"{name} must be in {'(0, 1)' if open_ else '[0, 1]'}, got {value}")


def _check_counts(k: int, n: int) -> None:
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def binomial_upper(k: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson bound: exact, so it is safe even at k = 0 or tiny n."""
    _check_counts(k, n)
    _check_unit("delta", delta, open_=True)
    if k >= n:
        return 1.0
    return float(stats.beta.ppf(1.0 - delta, k + 1, n - k))


def binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson; n = 0 means nothing is known, hence (0, 1)."""
    _check_counts(k, n)
    _check_unit("confidence", confidence, open_=True)
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k >= n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def _h1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Binary KL divergence; xlogy makes the a = 0 and a = 1 ends exact instead of nan."""
    return special.xlogy(a, a / b) + special.xlogy(1.0 - a, (1.0 - a) / (1.0 - b))


def _hb_p(mean: np.ndarray, n: int, alpha: np.ndarray) -> np.ndarray:
    """Vectorised so a whole threshold sweep (and its bisection) costs a few ufunc calls."""
    mean, alpha = np.broadcast_arrays(np.asarray(mean, float), np.asarray(alpha, float))
    inner = np.clip(alpha, _EDGE, 1.0 - _EDGE)
    hoeffding = np.exp(-n * _h1(np.minimum(mean, inner), inner))
    k = np.ceil(np.round(n * mean, 9))  # rounding stops 0.3 * 10 = 3.0000000004 costing a count
    bentkus = math.e * special.bdtr(k, n, inner)
    p = np.minimum(np.minimum(hoeffding, bentkus), 1.0)
    # risk > alpha >= 1 is impossible for [0, 1] losses; risk > alpha <= 0 can never be refuted.
    return np.where(alpha >= 1.0, 0.0, np.where(alpha <= 0.0, 1.0, p))


def _hb_upper(mean: np.ndarray, n: int, delta: float) -> np.ndarray:
    """Bisection works because the p-value only falls as alpha rises; hi stays on the safe side."""
    means = np.asarray(mean, float)
    lo, hi = means.copy(), np.ones_like(means)
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2.0
        ok = _hb_p(means, n, mid) <= delta
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.minimum(hi, 1.0)


def hb_pvalue(mean: float, n: int, alpha: float) -> float:
    """P-value of H0 "risk > alpha" from n i.i.d. losses in [0, 1] with this sample mean."""
    _check_unit("mean", mean)
    return float(_hb_p(np.asarray(mean), int(n), np.asarray(alpha)))


def hb_upper(mean: float, n: int, delta: float) -> float:
    """Smallest risk the data can rule out at level delta: the bound a threshold is judged by."""
    _check_unit("mean", mean)
    _check_unit("delta", delta, open_=True)
    return float(_hb_upper(np.asarray([mean]), int(n), delta)[0])


def _kept(confidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(thresholds, items) mask; ">=" matches the cascade, which keeps ties at tier 1."""
    return np.asarray(confidence, float)[None, :] >= np.asarray(thresholds, float)[:, None]


def _same_length(*arrays: np.ndarray) -> None:
    if len({len(np.asarray(a)) for a in arrays}) > 1:
        raise ValueError("labels and confidences must have one entry per item")


def tier2_shares(confidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share escalated per threshold: the cost side of the trade-off the selectors weigh."""
    return 1.0 - _kept(confidence, thresholds).mean(axis=1)


def disagreement_losses(small_ids: np.ndarray, big_ids: np.ndarray, confidence: np.ndarray,
                        thresholds: np.ndarray) -> np.ndarray:
    """Loss against the big model itself, so unlabeled production traffic can calibrate."""
    _same_length(small_ids, big_ids, confidence)
    differ = np.asarray(small_ids) != np.asarray(big_ids)
    return (_kept(confidence, thresholds) & differ[None, :]).astype(float)


def accuracy_drop_losses(small_ids: np.ndarray, big_ids: np.ndarray, gold_ids: np.ndarray,
                         confidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Signed: tier 1 beating tier 2 on an item pays back a loss elsewhere, so the mean is exact."""
    _same_length(small_ids, big_ids, gold_ids, confidence)
    gold = np.asarray(gold_ids)
    gap = (np.asarray(big_ids) == gold).astype(float) - (np.asarray(small_ids) == gold)
    return np.where(_kept(confidence, thresholds), gap[None, :], 0.0)


def harm_losses(small_ids: np.ndarray, big_ids: np.ndarray, gold_ids: np.ndarray,
                confidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """1 where tier 1 keeps an item it gets wrong and tier 2 would have got right, else 0.

    The accuracy drop is harm minus gain (kept items tier 1 gets right and tier 2
    wrong), so mean harm bounds the drop from above. Bounding harm instead of the
    signed drop is far tighter: the signed loss must be rescaled from [-1, 1] to
    [0, 1], which halves the budget's distance from the mean and puts both near
    0.5, where Hoeffding-Bentkus is at its loosest; harm is already in {0, 1}
    with a mean near 0, where the bound is nearly k/n.
    """
    _same_length(small_ids, big_ids, gold_ids, confidence)
    gold = np.asarray(gold_ids)
    harm = (np.asarray(small_ids) != gold) & (np.asarray(big_ids) == gold)
    return (_kept(confidence, thresholds) & harm[None, :]).astype(float)


@dataclass(frozen=True, eq=False)
class Selection:
    """Everything a report needs to justify the threshold, per threshold in input order."""

    thresholds: np.ndarray
    valid: np.ndarray
    estimate: np.ndarray
    upper: np.ndarray
    pvalues: np.ndarray
    budget: float
    delta: float

    def fastest(self, tier2_share: np.ndarray) -> int | None:
        return fastest_valid(self, tier2_share)


def select_threshold(losses: np.ndarray, thresholds: np.ndarray, budget: float, delta: float,
                     lower: float = -1.0) -> Selection:
    """Learn then Test with fixed-sequence testing, most conservative threshold first."""
    losses, thresholds = np.asarray(losses, float), np.asarray(thresholds, float)
    _check_unit("delta", delta, open_=True)
    if losses.ndim != 2 or losses.shape[0] != len(thresholds) or losses.shape[1] == 0:
        raise ValueError("losses must have shape (len(thresholds), n) with n >= 1")
    if not lower < 1.0 or losses.min() < lower or losses.max() > 1.0:
        raise ValueError(f"losses must lie in [{lower}, 1]")
    n, span = losses.shape[1], 1.0 - lower
    estimate = losses.mean(axis=1)
    scaled = np.clip((estimate - lower) / span, 0.0, 1.0)
    pvalues = _hb_p(scaled, n, np.asarray((budget - lower) / span))
    order = np.argsort(-thresholds, kind="stable")
    valid = np.empty(len(thresholds), bool)
    valid[order] = np.cumprod(pvalues[order] <= delta).astype(bool)
    upper = lower + span * _hb_upper(scaled, n, delta)
    return Selection(thresholds, valid, estimate, upper, pvalues, float(budget), float(delta))


def fastest_valid(selection: Selection, tier2_share: np.ndarray) -> int | None:
    """Among guaranteed thresholds, the cheapest; ties go to the higher, safer threshold."""
    candidates = np.flatnonzero(selection.valid)
    if candidates.size == 0:
        return None
    share = np.asarray(tier2_share, float)[candidates]
    best = np.lexsort((-selection.thresholds[candidates], share))[0]
    return int(candidates[best])


def budget_threshold(tier2_share: np.ndarray, estimate: np.ndarray, max_tier2: float) -> int | None:
    """When tier-2 capacity, not quality, is the constraint: best quality that fits it."""
    share, estimate = np.asarray(tier2_share, float), np.asarray(estimate, float)
    candidates = np.flatnonzero(share <= max_tier2 + 1e-12)
    if candidates.size == 0:
        return None
    best = np.lexsort((share[candidates], estimate[candidates]))[0]
    return int(candidates[best])


@dataclass(frozen=True)
class AuditEstimate:
    """Agreement with tier 2, for the accepted items and for the whole job, with intervals."""

    accepted: int
    escalated: int
    audited: int
    agreed: int
    confidence: float
    accepted_agreement: float | None
    accepted_low: float | None
    accepted_high: float | None
    job_agreement: float | None
    job_low: float | None
    job_high: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def audit_estimate(accepted: int, escalated: int, audited: int, agreed: int,
                   confidence: float = 0.95) -> AuditEstimate:
    """Escalated items agree by definition, so only the accepted share carries uncertainty."""
    if min(accepted, escalated) < 0 or not 0 <= agreed <= audited <= accepted:
        raise ValueError("need 0 <= agreed <= audited <= accepted and escalated >= 0")
    total = accepted + escalated

    def job(a: float | None) -> float | None:
        if total == 0 or (a is None and accepted > 0):
            return None
        return (escalated + accepted * (a or 0.0)) / total

    point = low = high = None
    if audited > 0:
        point = agreed / audited
        low, high = binomial_interval(agreed, audited, confidence)
    return AuditEstimate(accepted, escalated, audited, agreed, confidence, point, low, high,
                         job(point), job(low), job(high))
