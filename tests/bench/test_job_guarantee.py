"""The offline replay of a job's calibration: its figures follow from the scores, and the promise shows."""
from __future__ import annotations

import numpy as np

from bench.job_guarantee import Scores, format_rows, oracle_share, replay, synthetic


def test_oracle_share_is_the_lowest_tier2_share_within_the_budget() -> None:
    s = Scores(np.array([0.9, 0.8, 0.8, 0.7, 0.6]), np.zeros(5, int), np.array([0, 0, 1, 0, 0]))
    assert oracle_share(s, 0.2) == 0.0  # one disagreement in five is 20%: everything may stay at tier 1
    assert oracle_share(s, 0.1) == 0.8  # only above the tied 0.8 pair: the cut cannot split ties
    assert oracle_share(s, 0.0) == 0.8


def test_replay_keeps_the_promise_and_the_tuning_threshold_breaks_on_a_shifted_corpus() -> None:
    rows = replay(synthetic(8000, 1), synthetic(2000, 2, easy=True), 0.16, sizes=(5000,), shares=(0.02,), runs=40)
    by_rule = {r.rule: r for r in rows}
    assert by_rule["job"].miss <= 0.1 + 3 * np.sqrt(0.09 / 40)
    assert by_rule["tuning"].miss > 0.5  # certified on easier items, it over-promises on this corpus
    assert by_rule["oracle"].speed >= by_rule["job"].speed > 1.0
    assert by_rule["job"].sample > 0
    assert "| 5,000 | 2.0% | job |" in format_rows(rows)


def test_speed_counts_the_sample_the_audit_and_a_rest_that_skips_tier1_at_threshold_one() -> None:
    from bench.job_guarantee import _speed

    assert _speed(0.2, 0.5) == 1 / 0.7
    assert _speed(0.2, 0.5, audit=0.1) == 1 / (0.7 + 0.05)  # tier 2 also checks a tenth of the half tier 1 keeps
    assert _speed(0.2, 1.0) == 1.0  # at threshold 1.0 the job is the big model alone
    assert _speed(0.2, 1.0, size=100, sample=10) == 100 / (10 * 1.2 + 90 * 1.0)
    assert _speed(0.2, 0.5, size=100, sample=10, audit=0.1) == 100 / (10 * 1.2 + 90 * 0.75)


def test_the_frontier_is_a_sample_size_the_bound_can_use_and_no_faster_than_the_oracle() -> None:
    from bench.job_guarantee import frontier
    from common.guarantee import minimum_sample_size

    size, of_oracle = frontier(synthetic(8000, 1), 0.16, 5000, 0.02, 0.9, runs=10, method="exact")
    assert minimum_sample_size(5000, 0.02, 0.9) <= size <= 5000 // 8 and 0.0 < of_oracle < 1.0
