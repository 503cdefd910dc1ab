"""Threshold selection keeps its promise, audits cover the truth, audit samples are reproducible."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from common.risk import (
    accuracy_drop_losses,
    audit_estimate,
    binomial_interval,
    binomial_upper,
    budget_threshold,
    disagreement_losses,
    fastest_valid,
    harm_losses,
    hb_pvalue,
    hb_upper,
    select_threshold,
    tier2_shares,
)
from common.sampling import audit_mask


@pytest.mark.parametrize("k,n,delta", [(0, 10, 0.05), (3, 20, 0.1), (47, 100, 0.01), (9, 10, 0.05)])
def test_binomial_upper_is_the_beta_quantile(k: int, n: int, delta: float) -> None:
    assert binomial_upper(k, n, delta) == pytest.approx(stats.beta.ppf(1 - delta, k + 1, n - k))


def test_binomial_edges() -> None:
    assert binomial_upper(0, 0, 0.05) == 1.0
    assert binomial_upper(10, 10, 0.05) == 1.0
    assert binomial_interval(0, 0) == (0.0, 1.0)
    low, high = binomial_interval(0, 30)
    assert low == 0.0 and high == pytest.approx(stats.beta.ppf(0.975, 1, 30))
    with pytest.raises(ValueError):
        binomial_upper(5, 4, 0.05)


@pytest.mark.parametrize("k,n", [(1, 10), (37, 80), (5, 5), (250, 1000)])
def test_interval_contains_the_proportion(k: int, n: int) -> None:
    low, high = binomial_interval(k, n, 0.9)
    assert low <= k / n <= high
    assert low == pytest.approx(stats.beta.ppf(0.05, k, n - k + 1))


def test_hb_upper_sits_above_the_mean_and_shrinks_with_n() -> None:
    uppers = [hb_upper(0.2, n, 0.1) for n in (50, 200, 1000, 5000)]
    assert all(u > 0.2 for u in uppers)
    assert all(a > b for a, b in zip(uppers, uppers[1:]))
    assert uppers[-1] < 0.23
    assert hb_upper(0.2, 0, 0.1) == 1.0 and hb_upper(1.0, 100, 0.1) == 1.0


def test_hb_is_more_conservative_than_clopper_pearson_on_binary_losses() -> None:
    for n in (20, 100, 500):
        for k in (0, 1, n // 10, n // 2):
            assert hb_upper(k / n, n, 0.1) >= binomial_upper(k, n, 0.1) - 1e-9


def test_hb_upper_is_where_the_pvalue_crosses_delta() -> None:
    upper = hb_upper(0.1, 400, 0.05)
    assert hb_pvalue(0.1, 400, upper) <= 0.05 < hb_pvalue(0.1, 400, upper - 1e-6)


def test_hb_pvalue_falls_as_alpha_rises() -> None:
    pvalues = [hb_pvalue(0.1, 300, a) for a in np.linspace(0.05, 0.4, 50)]
    assert all(a >= b for a, b in zip(pvalues, pvalues[1:]))
    assert pvalues[0] == 1.0 and pvalues[-1] < 1e-6


SMALL = np.array([0, 1, 1, 2, 0, 2])
BIG = np.array([0, 1, 2, 2, 1, 1])
GOLD = np.array([0, 0, 2, 2, 1, 2])
CONF = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])


def test_accuracy_drop_mean_is_the_cascade_drop() -> None:
    # Threshold 0.7 keeps items 0-3 at tier 1: cascade labels 0,1,1,2,1,1 -> correct at 0,3,4 = 3/6;
    # the big model alone is correct at 0,2,3,4 = 4/6; drop = 1/6.
    losses = accuracy_drop_losses(SMALL, BIG, GOLD, CONF, np.array([0.7, 1.0, 0.55, 0.0]))
    assert losses[0].mean() == pytest.approx(1 / 6)
    assert losses[1].tolist() == [0.0] * 6
    # 0.55 also keeps item 4 (small wrong, big right): cascade correct at 0,3 = 2/6, drop 2/6.
    assert losses[2].mean() == pytest.approx(2 / 6)
    # 0 is the small model alone, correct at 0,3,5: winning item 5 pays one back, drop 1/6.
    assert losses[3].mean() == pytest.approx(1 / 6) and losses[3][5] == -1.0
    assert set(np.unique(losses)) <= {-1.0, 0.0, 1.0}


def test_harm_counts_kept_items_only_tier_2_gets_right_and_bounds_the_drop() -> None:
    thresholds = np.array([0.7, 0.0, 1.0])
    harm = harm_losses(SMALL, BIG, GOLD, CONF, thresholds)
    assert harm[0].tolist() == [0, 0, 1, 0, 0, 0]  # item 1: both wrong, no harm
    assert harm[1].tolist() == [0, 0, 1, 0, 1, 0] and harm[2].sum() == 0
    drop = accuracy_drop_losses(SMALL, BIG, GOLD, CONF, thresholds).mean(axis=1)
    assert harm[0].mean() == pytest.approx(drop[0])  # no gains kept: harm is the drop
    assert harm[1].mean() == pytest.approx(2 / 6) and drop[1] == pytest.approx(1 / 6)  # item 5's gain


def test_disagreement_counts_kept_differences_and_ties_are_kept() -> None:
    losses = disagreement_losses(SMALL, BIG, CONF, np.array([0.8, 0.6, 0.81]))
    assert losses[0].tolist() == [0, 0, 1, 0, 0, 0]  # confidence 0.8 == threshold: kept
    assert losses[1].tolist() == [0, 0, 1, 0, 1, 0]
    assert losses[2].sum() == 0
    assert tier2_shares(CONF, np.array([0.8, 0.0])).tolist() == pytest.approx([0.5, 0.0])


def test_losses_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        disagreement_losses(SMALL, BIG[:5], CONF, np.array([0.5]))


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    n = 3000
    losses = np.zeros((3, n))
    losses[1, : n // 2] = 1.0  # the middle threshold is terrible; the last is perfect
    thresholds = np.array([0.5, 0.7, 0.9])  # deliberately not sorted
    order = [2, 1, 0]
    sel = select_threshold(losses[order], thresholds, budget=0.05, delta=0.1, lower=0.0)
    assert sel.valid.tolist() == [False, False, True]
    assert sel.pvalues[0] <= 0.1  # 0.5 would pass on its own, but testing stopped at 0.7
    assert sel.upper[2] >= sel.estimate[2] and sel.upper[1] > 0.5
    assert fastest_valid(sel, np.array([0.0, 0.3, 0.6])) == 2


def test_accuracy_drop_rescaling_needs_evidence() -> None:
    thresholds = np.array([1.0])
    assert not select_threshold(np.zeros((1, 100)), thresholds, 0.02, 0.1).valid[0]
    big = select_threshold(np.zeros((1, 40000)), thresholds, 0.02, 0.1)
    assert big.valid[0] and -1.0 < big.upper[0] < 0.02


def _simulated_calibration(rng: np.random.Generator, n: int, thresholds: np.ndarray) -> np.ndarray:
    """Confidence ~ U(0, 1), disagreement w.p. 1 - c: the true risk at t is (1 - t)^2 / 2."""
    conf = rng.random(n)
    big = (rng.random(n) < 1.0 - conf).astype(int)
    return disagreement_losses(np.zeros(n, int), big, conf, thresholds)


def test_selected_thresholds_keep_the_budget_across_seeds() -> None:
    thresholds = np.linspace(1.0, 0.5, 26)
    true_risk = (1.0 - thresholds) ** 2 / 2.0
    budget, delta = 0.05, 0.1
    failures, powered = 0, 0
    for seed in range(300):
        losses = _simulated_calibration(np.random.default_rng(seed), 2000, thresholds)
        sel = select_threshold(losses, thresholds, budget, delta, lower=0.0)
        failures += bool(np.any(sel.valid & (true_risk > budget)))
        powered += bool(sel.valid[thresholds == 0.8][0])
    assert failures / 300 <= delta + 0.03
    assert powered / 300 > 0.5  # not vacuous: a threshold at risk 0.02 is usually certified


def test_budget_threshold_picks_best_quality_within_capacity() -> None:
    share = np.array([1.0, 0.4, 0.2, 0.0])
    estimate = np.array([0.0, 0.01, 0.03, 0.08])
    assert budget_threshold(share, estimate, 0.3) == 2
    assert budget_threshold(share, estimate, 1.0) == 0
    assert budget_threshold(share + 0.5, estimate, 0.3) is None


def test_fastest_valid_prefers_higher_threshold_on_ties_and_none_when_empty() -> None:
    losses = np.zeros((3, 5000))
    sel = select_threshold(losses, np.array([0.6, 0.8, 1.0]), 0.05, 0.1, lower=0.0)
    assert sel.valid.all()
    assert fastest_valid(sel, np.array([0.1, 0.1, 1.0])) == 1
    assert sel.fastest(np.array([0.05, 0.1, 1.0])) == 0
    none = select_threshold(np.ones((1, 50)), np.array([1.0]), 0.05, 0.1, lower=0.0)
    assert fastest_valid(none, np.array([1.0])) is None


def test_audit_estimate_values_and_edges() -> None:
    est = audit_estimate(accepted=800, escalated=200, audited=100, agreed=90)
    assert est.accepted_agreement == pytest.approx(0.9)
    assert est.job_agreement == pytest.approx((200 + 800 * 0.9) / 1000)
    assert est.accepted_low < 0.9 < est.accepted_high
    assert est.job_low == pytest.approx((200 + 800 * est.accepted_low) / 1000)
    d = est.to_dict()
    assert d["audited"] == 100 and isinstance(d["job_high"], float)
    empty = audit_estimate(800, 200, 0, 0).to_dict()
    assert empty["accepted_agreement"] is None and empty["job_low"] is None
    assert audit_estimate(0, 50, 0, 0).job_agreement == 1.0
    with pytest.raises(ValueError):
        audit_estimate(10, 0, 5, 6)


def test_audit_intervals_cover_the_truth() -> None:
    accepted, escalated, rate = 3000, 1000, 0.03
    agrees = np.random.default_rng(7).random(accepted) < 0.85
    truth = agrees.mean()
    job_truth = (escalated + accepted * truth) / (accepted + escalated)
    covered = job_covered = 0
    seeds = 500
    for seed in range(seeds):
        mask = audit_mask(f"job-{seed}", np.arange(accepted), rate)
        est = audit_estimate(accepted, escalated, int(mask.sum()), int(agrees[mask].sum()))
        covered += est.accepted_low <= truth <= est.accepted_high
        job_covered += est.job_low <= job_truth <= est.job_high
    assert covered / seeds >= 0.93
    assert job_covered / seeds >= 0.93
