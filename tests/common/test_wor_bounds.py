"""Finite-corpus p-values are valid (checked exactly against the hypergeometric law) and rank as theory says."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from common.wor_bounds import METHODS, allowed_count, rest_limit, rest_pvalue, rest_upper


def _rejection_rate(method: str, n: int, total: int, t: int, level: float) -> float:
    """P_t(p <= level) computed exactly: the sum of the hypergeometric pmf over the counts the test rejects."""
    ks = np.arange(0, min(n, t) + 1)
    pmf = stats.hypergeom.pmf(ks, total, t, n)
    rejected = np.array([rest_pvalue(int(k), n, total, t - int(k), method) <= level for k in ks])
    return float(pmf[rejected].sum())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n,total,t", [(60, 200, 12), (150, 400, 9), (100, 3000, 90)])
def test_pvalues_are_valid_under_every_null(method: str, n: int, total: int, t: int) -> None:
    for level in (0.05, 0.1, 0.3):
        assert _rejection_rate(method, n, total, t, level) <= level + 1e-12


def test_exact_is_tight_where_the_others_are_not() -> None:
    """The exact test spends nearly all of delta; a bound that spent none of it would certify nothing."""
    n, total, t = 150, 400, 9
    grid = [_rejection_rate("exact", n, total, t, 0.1), _rejection_rate("hb", n, total, t, 0.1)]
    assert grid[0] > 0.05 and grid[1] <= grid[0]


@pytest.mark.parametrize("n,total,share", [(300, 2000, 0.02), (1000, 2000, 0.02), (2000, 20000, 0.01),
                                           (500, 5000, 0.05)])
def test_exact_certifies_the_most_and_betting_beats_hb_when_the_sample_is_a_large_share(
        n: int, total: int, share: float) -> None:
    counts = {m: allowed_count(n, total, share, 0.1, m) for m in METHODS}
    assert counts["exact"] == max(counts.values())  # uniformly most powerful: nothing passes above it
    assert counts["hb+betting"] <= max(counts["hb"], counts["betting"])
    if n / total >= 0.5:  # the finite-population correction HB ignores
        assert counts["betting"] > counts["hb"]


def test_allowed_count_is_the_largest_count_the_exact_test_rejects() -> None:
    n, total, share, delta = 800, 10_000, 0.02, 0.1
    k = allowed_count(n, total, share, delta)
    r0 = rest_limit(share, total - n)
    assert stats.hypergeom.cdf(k, total, k + r0, n) <= delta < stats.hypergeom.cdf(k + 1, total, k + 1 + r0, n)


def test_rest_limit_rounds_exact_products() -> None:
    assert rest_limit(0.01, 500) == 6  # 5 of 500 is exactly 1%: allowed; 6 breaks it
    assert rest_limit(0.3, 10) == 4


def test_too_small_a_sample_certifies_nothing() -> None:
    assert allowed_count(50, 10_000, 0.01, 0.1) == -1  # 50 clean items do not rule out 1% of 10,000
    assert allowed_count(400, 10_000, 0.01, 0.1) >= 0


def test_rest_upper_covers_and_is_at_most_the_target_when_certified() -> None:
    n, total, delta = 500, 5000, 0.1
    k = allowed_count(n, total, 0.02, delta)
    assert rest_upper(k, n, total, delta) <= 0.02
    assert rest_upper(k + 3, n, total, delta) > 0.02
    assert rest_upper(0, n, total, delta) > 0.0  # zero seen is not zero in the rest
