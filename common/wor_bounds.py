"""Tail bounds for a sample drawn without replacement from a finite corpus, and what they certify.

The setting. A corpus of ``total`` (N) items is fixed; for a threshold, some
of its items are "bad" (tier 1 accepts them with a label the big model would
not give, or, with gold labels, tier 1 accepts them wrong where tier 2 is
right). A uniform sample of ``size`` (n) items without replacement is drawn;
its bad count K is Hypergeometric(N, T, n) when the corpus holds T bad items.
The sample goes to tier 2, so what must be bounded is the bad count R = T - K
of the *rest* (the M = N - n unsampled items): the promise "the rest's bad
share is at most D" fails when R >= r0, r0 = floor(D M) + 1.

The p-values. Each method gives ``pvalue(k, t)``, a valid p-value for the
simple null "the corpus holds t bad items" that is nondecreasing in the
observed k (P_t(pvalue(K, t) <= a) <= a for every a):

- ``exact``: the hypergeometric CDF P_t(K <= k) itself. K is sufficient for T
  and the family has monotone likelihood ratio in K, so this is the uniformly
  most powerful test: no bound, betting or otherwise, can certify more.
- ``hb``: Hoeffding-Bentkus at the corpus share t/N. Valid without
  replacement because Hoeffding (1963, Theorem 4) shows E f(sum without
  replacement) <= E f(sum with replacement) for every convex continuous f, and
  the with-replacement sum of a {0, 1} population is Binomial(n, t/N).
  Hoeffding's term is Markov on exp(-theta S), Bentkus's (2004) rests on
  E (h - S)_+; both convex in S, so both carry over unchanged.
- ``betting``: the without-replacement betting martingale of Waudby-Smith and
  Ramdas (2023, JRSSB, section 6; NeurIPS 2020), W = prod_i (1 - lam (X_i -
  mu_i)) with mu_i = (t - S_{i-1}) / (N - i + 1), the null mean of the items
  not yet drawn. Under the null E[X_i | past] = mu_i, so W is a positive
  martingale with E W = 1. The bet lam is the Kelly bet of the null t
  against the sample count t - r0 it has to reject (for a {0, 1} population
  the variance is the mean's, so this is where variance adaptivity lands),
  fixed once t and the target are, before any data; in [0, 0.99] so every
  factor stays positive. The sample is an unordered set,
  so W is averaged over its orders (Rao-Blackwell): e(k) = E[W | K = k], a
  function of k alone with E_t e(K) = E_t W = 1, and p = min(1, 1 / e) is
  valid by Markov's inequality. Flipping one X from 0 to 1 lowers every
  factor from there on, so e falls and p rises with k.
- ``hb+betting``: 2 min(p_hb, p_betting), Bonferroni over the two: valid, and
  the better of the two at the price of halving delta.

From p-values to a certified threshold (Learn then Test, fixed sequence).
Let k* be a count with pvalue(k*, k* + r0) <= delta (the largest, found by
bisection; any such count is valid). A threshold is
certified when its sample bad count is at most k*; bad sets only grow as the
threshold falls, so the certified thresholds are exactly the prefix that
fixed-sequence testing from the most conservative threshold accepts, and the
job takes the lowest of them. Validity, for any corpus and any grid (even the
continuum): order the corpus's bad items at the lowest threshold by
confidence, highest first, ties by index, and pad the list with other items;
its prefixes B_m form one fixed chain containing every threshold's bad set.
If the chosen threshold's bad set B_m' has K(B_m') <= k* and R(B_m') >= r0,
then for m1 = k* + r0 either m' >= m1 and K(B_m1) <= K(B_m') <= k*, or m' <
m1 and R(B_m1) >= R(B_m') >= r0, so K(B_m1) = m1 - R(B_m1) <= k*. Either way
K(B_m1) <= k*, and K(B_m1) ~ Hypergeometric(N, m1, n) for this fixed set, so
P(failure) <= P_m1(K <= k*) <= P_m1(pvalue(K, m1) <= delta) <= delta, the
middle step by the monotonicity in k. The whole job's share is R / N <= D M / N,
since the sample's items are the big model's own answers.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

from common.risk import _hb_p  # the vectorised Hoeffding-Bentkus p-value the sweep already trusts

METHODS = ("exact", "hb", "betting", "hb+betting")
_MAX_BET = 0.99


def rest_limit(max_share: float, rest: int) -> int:
    """The smallest bad count of the rest that breaks "share <= max_share" (rounded so 0.01 x 500 is 5, not 4.99)."""
    return math.floor(round(max_share * rest, 9)) + 1


def _exact(k: np.ndarray, n: int, total: int, t: np.ndarray) -> np.ndarray:
    return stats.hypergeom.cdf(k, total, t, n)


def _hb(k: np.ndarray, n: int, total: int, t: np.ndarray) -> np.ndarray:
    """risk's HB reads a share of 1 as an impossible null; here t = N is possible, and exactly known."""
    hb = _hb_p(np.asarray(k, float) / n, n, np.asarray(t, float) / total)
    return np.where(np.asarray(t) >= total, _exact(k, n, total, t), hb)


def _kelly(t: int, alternative: int, n: int, total: int) -> float:
    """The bet that grows fastest when the sample holds ``alternative`` bad items while the null says t."""
    null, alt = t / total, max(alternative, 0) / n
    if alt >= null or null >= 1.0:
        return 0.0
    return min(_MAX_BET, (null - alt) / (null * (1.0 - null)))


def betting_evalue(k: int, n: int, total: int, t: int, bet: float) -> float:
    """E[W | K = k] for the WoR betting martingale against "t bad in the corpus", over the sample's orders.

    Forward recursion over draws i with state s = bad items drawn so far: given
    K = k, draw i is bad with probability (k - s) / (n - i + 1) whatever t is.
    """
    if k > t or n - k > total - t:
        return math.inf  # impossible under the null
    s = np.arange(k + 1, dtype=float)
    mass = np.zeros(k + 1)
    mass[0] = 1.0
    for i in range(1, n + 1):
        left = n - i + 1
        p_bad = (k - s) / left
        mu = np.clip((t - s) / (total - i + 1), 0.0, 1.0)
        stay = mass * (1.0 - p_bad) * (1.0 + bet * mu)
        move = mass * p_bad * (1.0 - bet * (1.0 - mu))
        mass = stay
        mass[1:] += move[:-1]
    return float(mass[k])


def rest_pvalue(observed: int, size: int, total: int, rest_count: int, method: str = "exact") -> float:
    """P-value of "at least ``rest_count`` of the unsampled items are bad" when ``observed`` of the sample are.

    Evaluated at the least favourable corpus count, t = observed + rest_count;
    see the module docstring for why that is all the certification needs.
    """
    _check_method(method)
    t = observed + rest_count
    if t > total or rest_count > total - size:
        return 0.0  # the rest cannot hold that many: the null is impossible
    if method == "exact":
        return float(_exact(np.asarray(observed), size, total, np.asarray(t)))
    if method == "hb":
        return float(_hb(np.asarray(observed), size, total, np.asarray(t)))
    bet = _kelly(t, observed, size, total)
    betting = min(1.0, 1.0 / max(betting_evalue(observed, size, total, t, bet), 1e-300))
    if method == "betting":
        return betting
    return min(1.0, 2.0 * min(betting, float(_hb(np.asarray(observed), size, total, np.asarray(t)))))


@lru_cache(maxsize=4096)
def allowed_count(size: int, total: int, max_share: float, delta: float, method: str = "exact") -> int:
    """k*: the most bad items the sample may hold at a certified threshold; -1 when even 0 certifies nothing.

    Cached: it depends on the sizes and the target only, never on the data, so
    a replay over many samples pays for it once.
    """
    _check_method(method)
    r0 = rest_limit(max_share, total - size)
    return _search(lambda k: rest_pvalue(k, size, total, r0, method) <= delta, _count_range(size, total, r0, delta))


def _count_range(size: int, total: int, r0: int, delta: float) -> int:
    """Where to stop looking for k*: past about size x r0 / (N - size) the sample already looks as bad as
    the null, so the exact p-value is near one half, above any delta < 0.5; checked, not assumed."""
    high = min(size, int(2 * size * r0 / max(total - size, 1)) + 50)
    while high < size and _exact(np.asarray(high), size, total, np.asarray(min(high + r0, total))) <= delta:
        high = min(size, 2 * high)
    return high


def _search(ok, high: int) -> int:
    """Largest k in [0, high] with ok(k), by bisection.

    Bisection assumes ok holds on a prefix (it does for every method here in
    practice: the p-value at t = k + r0 rises with k); where it did not, the
    answer would still pass ok, which is all validity needs.
    """
    if not ok(0):
        return -1
    lo, hi = 0, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


@lru_cache(maxsize=4096)
def rest_upper(observed: int, size: int, total: int, delta: float) -> float:
    """The exact per-threshold upper confidence bound on the rest's bad share: what the status line shows.

    The smallest rest count r the hypergeometric test rejects at delta gives
    the bound (r - 1) / M; at a certified threshold it is at most the target,
    since the exact test dominates every method here.
    """
    rest = total - size
    lo, hi = 0, rest + 1  # hi is always rejected: the rest cannot hold rest + 1 bad items
    while lo < hi:
        mid = (lo + hi) // 2
        if rest_pvalue(observed, size, total, mid, "exact") <= delta:
            hi = mid
        else:
            lo = mid + 1
    return max(lo - 1, 0) / rest if rest else 0.0


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"bound method must be one of {', '.join(METHODS)}, got {method!r}")
