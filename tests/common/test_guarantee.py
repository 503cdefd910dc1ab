"""A job's certified threshold keeps its promise on the rest of its corpus, and refuses what it cannot promise."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from common.errors import ConfigError, GuaranteeError
from common.guarantee import (certify, check_sample_size, check_target, minimum_sample_size, plan_calibration,
                              resolve_calibration)
from common.sampling import calibration_sample
from common.wor_bounds import allowed_count, rest_limit

RUNS = 2000
LEVEL = 0.9


def _ceiling(runs: int, delta: float) -> float:
    """delta plus three binomial standard deviations: a broken bound misses by far more."""
    return delta + 3.0 * math.sqrt(delta * (1.0 - delta) / runs)


def _corpus(seed: int, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A corpus whose disagreements thin out as tier 1's confidence grows, with a seed-drawn steepness."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.5, 1.0, total)
    steep = rng.uniform(1.0, 4.0)
    bad = rng.random(total) < 0.4 * ((1.0 - conf) / 0.5) ** steep
    small = rng.integers(0, 2, total)
    return conf, small, np.where(bad, 1 - small, small)


def _violated(conf, small, big, chosen: float, sample: np.ndarray, share: float) -> bool:
    rest = np.ones(len(conf), bool)
    rest[sample] = False
    accepted_bad = (conf[rest] >= chosen) & (small[rest] != big[rest]) & (chosen < 1.0)
    return accepted_bad.mean() > share


def _plug_in(conf, small, big, share: float) -> float:
    """The rule without a bound: the lowest threshold whose sample share is within the budget."""
    for t in np.sort(np.unique(np.append(conf, 1.0))):
        if ((conf >= t) & (small != big)).mean() <= share:
            return float(t)
    return 1.0


def test_promise_holds_on_the_rest_over_many_corpora() -> None:
    total, size, share = 1500, 300, 0.03
    misses = plug_in_misses = 0
    for run in range(RUNS):
        conf, small, big = _corpus(run, total)
        sample = calibration_sample(total, size, run)
        chosen = certify(conf[sample], small[sample], big[sample], total, share, LEVEL).threshold
        misses += _violated(conf, small, big, chosen, sample, share)
        if run < 200:
            naive = _plug_in(conf[sample], small[sample], big[sample], share)
            plug_in_misses += _violated(conf, small, big, naive, sample, share)
    assert misses / RUNS <= _ceiling(RUNS, 1 - LEVEL)
    assert plug_in_misses / 200 > 0.3  # the harness catches a rule with no bound


@pytest.mark.parametrize("method", ["exact", "hb+betting"])
def test_worst_corpus_misses_at_the_rate_the_bound_allows(method: str) -> None:
    """The chain argument's worst case: exactly k* + r0 bad items, all above every good one.

    The chosen threshold fails exactly when the sample holds at most k* of
    them, so the miss rate is a hypergeometric CDF; for the exact method it is
    a good share of delta (the bound wastes little beyond the counts' discreteness), and never above it.
    """
    total, size, share, delta = 2000, 400, 0.02, 1 - LEVEL
    k = allowed_count(size, total, share, delta, method)
    m1 = k + rest_limit(share, total - size)
    conf = np.linspace(1.0, 0.5, total, endpoint=False)
    small = np.zeros(total, int)
    big = np.where(np.arange(total) < m1, 1, 0)
    misses, runs = 0, RUNS // 2
    for run in range(runs):
        sample = calibration_sample(total, size, f"worst-{run}")
        chosen = certify(conf[sample], small[sample], big[sample], total, share, LEVEL, method=method).threshold
        misses += _violated(conf, small, big, chosen, sample, share)
    expected = stats.hypergeom.cdf(k, total, m1, size)
    assert expected <= delta
    sigma = math.sqrt(expected * (1 - expected) / runs)
    assert abs(misses / runs - expected) <= 3.5 * sigma
    if method == "exact":
        assert expected > 0.4 * delta


def test_max_drop_bounds_the_rest_accuracy_drop_with_gold_labels() -> None:
    total, size, share, runs = 1500, 400, 0.02, 500
    misses = 0
    for run in range(runs):
        rng = np.random.default_rng(10_000 + run)
        conf = rng.uniform(0.5, 1.0, total)
        gold = rng.integers(0, 2, total)
        big = np.where(rng.random(total) < 0.08, 1 - gold, gold)
        small = np.where(rng.random(total) < 0.5 * (1.0 - conf), 1 - gold, gold)
        sample = calibration_sample(total, size, run)
        g = certify(conf[sample], small[sample], big[sample], total, share, LEVEL, gold_ids=gold[sample],
                    loss="drop")
        rest = np.setdiff1d(np.arange(total), sample)
        final = np.where(conf[rest] >= g.threshold, small[rest], big[rest]) if g.threshold < 1 else big[rest]
        drop = (big[rest] == gold[rest]).mean() - (final == gold[rest]).mean()
        misses += drop > share
    assert misses / runs <= _ceiling(runs, 1 - LEVEL)


def test_certify_reports_a_consistent_guarantee() -> None:
    conf, small, big = _corpus(7, 5000)
    sample = calibration_sample(5000, 800, "job")
    g = certify(conf[sample], small[sample], big[sample], 5000, 0.02, LEVEL)
    assert g.observed <= g.allowed and g.bound <= 0.02 and g.job_bound < 0.02
    accepted = conf[sample] >= g.threshold
    assert g.tier2_share == pytest.approx(1 - accepted.mean())
    assert g.observed == int((accepted & (small[sample] != big[sample])).sum())
    lower = certify(conf[sample], small[sample], big[sample], 5000, 0.02, LEVEL, grid=[g.threshold - 0.01])
    assert lower.threshold in (1.0, g.threshold - 0.01)
    assert g.as_dict()["job_bound"] == pytest.approx(0.02 * 4200 / 5000)


def test_a_tier_that_always_disagrees_sends_everything_to_tier_2() -> None:
    conf = np.full(500, 0.99)
    g = certify(conf, np.zeros(500, int), np.ones(500, int), 10_000, 0.01, LEVEL)
    assert g.threshold == 1.0 and g.tier2_share == 1.0 and g.observed == 0


def test_same_seed_same_threshold_in_any_process_order() -> None:
    conf, small, big = _corpus(3, 4000)
    a = calibration_sample(4000, 500, 42)
    b = calibration_sample(4000, 500, 42)
    ga = certify(conf[a], small[a], big[a], 4000, 0.02, LEVEL)
    gb = certify(conf[b][::-1], small[b][::-1], big[b][::-1], 4000, 0.02, LEVEL)  # order of arrival is irrelevant
    assert ga == gb


@pytest.mark.parametrize("share,level,match", [(0.0, 0.9, "--max-disagreement"), (1.0, 0.9, "--max-disagreement"),
                                               (0.01, 0.5, "--confidence"), (0.01, 1.0, "--confidence")])
def test_bad_targets_name_their_option(share: float, level: float, match: str) -> None:
    with pytest.raises(GuaranteeError, match=match):
        check_target(share, level)


def test_bad_sample_sizes_name_the_option() -> None:
    with pytest.raises(GuaranteeError, match="--calibration must be between 1 and 999"):
        check_sample_size(1000, 1000, 0.01, LEVEL)
    with pytest.raises(GuaranteeError, match="--calibration 20 is too small.*at least"):
        check_sample_size(20, 10_000, 0.01, LEVEL)
    with pytest.raises(GuaranteeError, match="--max-drop"):
        check_sample_size(500, 10_000, 2.0, LEVEL, loss="drop")
    with pytest.raises(GuaranteeError, match="gold"):
        certify(np.ones(500), np.zeros(500), np.zeros(500), 10_000, 0.01, LEVEL, loss="drop")
    with pytest.raises(GuaranteeError, match="'many'"):
        resolve_calibration("many", 10_000, 0.01, LEVEL, 0.2)
    assert issubclass(GuaranteeError, ConfigError)


def test_minimum_sample_size_is_the_first_that_certifies() -> None:
    n = minimum_sample_size(10_000, 0.01, LEVEL)
    assert allowed_count(n, 10_000, 0.01, 0.1) == 0 and allowed_count(n - 1, 10_000, 0.01, 0.1) == -1
    assert minimum_sample_size(10_000, 0.02, LEVEL) < n < minimum_sample_size(10_000, 0.01, 0.95)
    assert minimum_sample_size(100, 0.001, LEVEL) == 91  # rules out one bad item among the 9 left
    assert minimum_sample_size(5, 0.01, LEVEL) is None  # even 4 of 5 miss the last one 1 time in 5


def test_auto_grows_with_the_corpus_and_says_when_there_is_no_gain() -> None:
    sizes = [plan_calibration(total, 0.01, LEVEL, 0.16).size for total in (5_000, 20_000, 100_000, 1_000_000)]
    assert all(0 < a <= b for a, b in zip(sizes, sizes[1:]))
    assert sizes[-1] / 1_000_000 < sizes[0] / 5_000  # a smaller share of a larger corpus
    plans = [plan_calibration(100_000, share, LEVEL, 0.16) for share in (0.005, 0.01, 0.02)]
    assert plans[0].minimum > plans[1].minimum > plans[2].minimum
    small = plan_calibration(800, 0.01, LEVEL, 0.16)
    assert small.size == 0 and not small.gain and "too small for any gain" in small.reason
    costly = plan_calibration(50_000, 0.01, LEVEL, 0.9)
    assert costly.size == 0 and "too small for any gain" in costly.reason
    plan = resolve_calibration("auto", 20_000, 0.01, LEVEL, 0.16)
    assert plan.gain and plan.expected_cost < 20_000 and plan.sample_cost == pytest.approx(plan.size * 1.16)
    assert resolve_calibration("1500", 20_000, 0.01, LEVEL, 0.16).size == 1500
