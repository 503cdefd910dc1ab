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
