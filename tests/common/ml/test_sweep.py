"""Threshold sweeps: the simulated cascade, the certified recommendation, budgets, folds, the CSV and the plot."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from common.errors import ConfigError
from common.metrics import accuracy
from common.ml.sweep import AGREEMENT, candidate_thresholds, fold_sweep, recommend, sweep
from common.ml.sweep_report import (BUDGET, GUARANTEE, POINT, fold_summary, format_fold, plot, recommendation_line,
                                    write_csv)
from common.risk import hb_upper

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _known_case():
    """100 items, confidences 0.5 .. 0.995; the small model is wrong only at 0.6, 0.85 and 0.9.

    The big model is always right. Allowing a 1-point drop (one item) the best
    threshold lets exactly the 0.9 error through: just above 0.85.
    """
    confidence = 0.5 + 0.005 * np.arange(100)
    refs = np.zeros(100, dtype=int)
    wrong = np.isin(np.arange(100), [20, 70, 80])  # confidences 0.6, 0.85, 0.9
    probs = np.where(wrong[:, None], np.stack([1 - confidence, confidence], 1), np.stack([confidence, 1 - confidence], 1))
    return probs, refs.copy(), refs


def test_point_estimate_rule_meets_its_constraint_with_the_known_answer():
    probs, big_preds, refs = _known_case()
    result = sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=1.0)
    best = recommend(result.rows, result.big_metric, 1.0)
    assert result.big_metric == 100.0 and result.small_metric == 97.0
    assert best.metric >= result.big_metric - 1.0
    assert 0.85 < best.threshold <= 0.855 + 1e-9
    assert best.tier2_fraction == pytest.approx(0.71)
    assert best.speedup == pytest.approx(1.0 / (0.01 + 0.71))
    assert all(r.speedup <= best.speedup for r in result.rows if r.metric >= result.big_metric - 1.0)


def test_zero_drop_needs_every_error_escalated():
    probs, big_preds, refs = _known_case()
    result = sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=0.0)
    best = recommend(result.rows, result.big_metric, 0.0)
    assert best.metric == 100.0 and 0.9 < best.threshold <= 0.905 + 1e-9


def _noisy_case(n: int, seed: int = 0):
    """Confidence ~ U(0.5, 1); the small model is right with probability = its confidence; the big one 92%."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    refs = rng.integers(0, 2, n)
    big = np.where(rng.random(n) < 0.92, refs, 1 - refs)
    small = np.where(rng.random(n) < confidence, refs, 1 - refs)
    probs = np.where(small[:, None] == np.arange(2), confidence[:, None], 1.0 - confidence[:, None])
    return probs, big, refs


def test_the_guarantee_is_more_conservative_than_the_point_estimate():
    probs, big, refs = _noisy_case(3000)
    result = sweep(probs, big, refs, 0.1, 1.0, max_drop=1.0)
    point = recommend(result.rows, result.big_metric, 1.0)
    certified = result.recommended
    assert result.rule == GUARANTEE and result.reason == ""
    assert certified.threshold > point.threshold + 0.05
    assert certified.tier2_fraction > point.tier2_fraction and certified.speedup < point.speedup
    assert certified.bound <= 1.0 < point.bound  # the point pick's own bound breaks the budget
    assert 1.0 < certified.speedup


def test_the_bound_sits_above_the_estimate_and_is_tight_at_one():
    probs, big, refs = _noisy_case(2000, seed=1)
    for loss in ("drop", "disagreement"):
        result = sweep(probs, big, refs, 0.1, 1.0, loss=loss, confidence=0.95)
        assert all(r.bound >= r.loss - 1e-9 for r in result.rows)
        last = result.rows[-1]
        assert last.threshold == 1.0 and last.loss == 0.0
        assert last.bound == pytest.approx(100.0 * hb_upper(0.0, 2000, 0.05))
    # the estimate is the signed drop, the bound is on harm: a small model that beats a poor big one
    # has a negative drop, yet the bound stays on the harm it can still do
    probs, _, refs = _known_case()
    poor_big = np.where(np.arange(100) % 2 == 0, refs, 1 - refs)
    result = sweep(probs, poor_big, refs, 0.01, 1.0)
    first = result.rows[0]
    assert first.loss == pytest.approx(result.big_metric - first.metric) == -47.0
    assert first.bound > 0.0


def test_threshold_one_escalates_confidences_that_rounded_to_one():
    probs, big_preds, refs = _known_case()
    probs[0] = [0.0, 1.0]  # confident and wrong
    result = sweep(probs, big_preds, refs, 0.01, 1.0, thresholds=[0.99, 1.0])
    assert result.rows[1].tier2_fraction == 1.0 and result.rows[1].loss == 0.0 and result.rows[1].metric == 100.0
    assert result.rows[0].loss == pytest.approx(1.0)


def test_budget_mode_is_the_lowest_loss_within_the_tier2_share():
    probs, big, refs = _noisy_case(3000)
    for share in (0.2, 0.5):
        result = sweep(probs, big, refs, 0.1, 1.0, max_tier2=share)
        best = result.recommended
        fitting = [r for r in result.rows if r.tier2_fraction <= share]
        assert result.rule == BUDGET and best.tier2_fraction <= share
        assert best.loss == min(r.loss for r in fitting) and best.bound >= best.loss
        assert "at most %g to tier 2" % share in recommendation_line(result)
    nothing = sweep(probs, big, refs, 0.1, 1.0, max_tier2=0.1, thresholds=[0.9, 1.0])
    assert nothing.recommended is None and "at most 0.1" in nothing.reason


def test_no_threshold_beats_the_big_model_alone():
    n = 872
    probs = np.tile([0.2, 0.8], (n, 1))  # confident and always wrong
    refs = np.zeros(n, int)
    result = sweep(probs, refs.copy(), refs, 0.1, 1.0)
    assert result.recommended is None
    assert result.reason == "no threshold beats the big model alone within 0.5 points at 90% confidence on these 872 items"
    assert recommendation_line(result).startswith("recommended threshold: none (no threshold beats")
    assert result.as_dict()["recommended"] is None
    # a perfect small model that costs as much as the big one is certified, yet not faster: none either
    slow = sweep(np.tile([0.8, 0.2], (n, 1)), refs.copy(), refs, 1.0, 1.0)
    assert slow.recommended is None and "beats the big model alone" in slow.reason
    too_few = sweep(probs[:50], refs[:50], refs[:50], 0.1, 1.0)
    assert "too few to certify" in too_few.reason


def test_other_metrics_keep_the_point_estimate_and_say_so():
    probs, big, refs = _noisy_case(3000)
    result = sweep(probs, big, refs, 0.1, 1.0, max_drop=1.0, metric=lambda p, r: 100.0 * accuracy(p, r),
                   metric_name="f1")
    assert result.rule == POINT and result.recommended == recommend(result.rows, result.big_metric, 1.0)
    assert "point estimate of f1" in recommendation_line(result)


def test_unlabelled_mode_reports_agreement_and_certifies_disagreement():
    probs, big, refs = _noisy_case(3000)
    result = sweep(probs, big, None, 0.1, 1.0, max_drop=2.0)
    assert result.metric_name == AGREEMENT and result.loss_name == "disagreement" and result.big_metric == 100.0
    assert all(r.loss == pytest.approx(100.0 - r.metric) for r in result.rows)
    best = result.recommended
    assert best.bound <= 2.0 and best.speedup > 1.0
    assert "disagreement with the big model" in recommendation_line(result)
    assert sweep(probs, big, refs, 0.1, 1.0, max_drop=2.0, loss="disagreement").recommended.threshold == best.threshold


def test_folds_choose_on_the_rest_and_measure_on_the_held_out_fold():
    probs, big, refs = _noisy_case(3000)
    report = fold_sweep(probs, big, refs, 0.1, 1.0, folds=4, seed=3, max_drop=1.0)
    assert [f.fold for f in report.folds] == [1, 2, 3, 4]
    assert sum(f.items for f in report.folds) == 3000 and all(f.fitted_on + f.items == 3000 for f in report.folds)
    assert all(f.threshold is not None and f.speedup > 1.0 for f in report.folds)
    assert report.worst_drop == max(f.drop for f in report.folds) and report.worst_drop <= 1.0
    assert report.mean_drop == pytest.approx(np.mean([f.drop for f in report.folds]))
    again = fold_sweep(probs, big, refs, 0.1, 1.0, folds=4, seed=3, max_drop=1.0)
    other = fold_sweep(probs, big, refs, 0.1, 1.0, folds=4, seed=4, max_drop=1.0)
    assert again.folds == report.folds and other.folds != report.folds
    assert format_fold(report.folds[0], "accuracy").startswith("fold 1: threshold 0.")
    assert fold_summary(report).startswith("folds: mean drop")
    with pytest.raises(ConfigError, match="--folds"):
        fold_sweep(probs, big, refs, 0.1, 1.0, folds=1)


def test_a_fold_with_nothing_certified_is_the_big_model_alone():
    probs, big, refs = _known_case()
    report = fold_sweep(probs, big, refs, 0.01, 1.0, folds=2)
    assert all(f.threshold is None and f.drop == 0.0 and f.speedup == 1.0 for f in report.folds)


def test_threshold_one_is_the_big_model_alone():
    probs, big_preds, refs = _known_case()
    last = sweep(probs, big_preds, refs, 0.01, 1.0).rows[-1]
    assert last.threshold == 1.0 and last.tier2_fraction == 1.0 and last.metric == 100.0


def test_grid_spans_one_over_k_to_one():
    grid = candidate_thresholds(np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]))
    assert grid[0] == pytest.approx(1 / 3) and grid[-1] == 1.0 and 0.5 in grid and 0.8 in grid


def test_recommend_returns_none_when_nothing_qualifies():
    probs, big_preds, refs = _known_case()
    rows = [r for r in sweep(probs, big_preds, refs, 0.01, 1.0).rows if r.metric < 100.0]
    assert recommend(rows, 100.0, 0.5) is None


def test_bad_inputs_are_named():
    probs, big_preds, refs = _known_case()
    with pytest.raises(ConfigError, match="--max-drop"):
        sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=-1)
    with pytest.raises(ConfigError, match="length"):
        sweep(probs, big_preds[:5], refs, 0.01, 1.0)
    for option, match in (({"confidence": 1.0}, "--confidence"), ({"loss": "f1"}, "--loss"),
                          ({"max_tier2": 1.5}, "--max-tier2")):
        with pytest.raises(ConfigError, match=match):
            sweep(probs, big_preds, refs, 0.01, 1.0, **option)


def test_csv_and_png_are_written(tmp_path):
    probs, big_preds, refs = _known_case()
    result = sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=1.0)
    rows = list(csv.DictReader(write_csv(result, tmp_path / "s.csv").open()))
    assert len(rows) == len(result.rows)
    assert set(rows[0]) == {"threshold", "accuracy", "tier2_fraction", "speedup", "loss", "bound"}
    png = plot(result, tmp_path / "s.png", "synthetic")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    from matplotlib import image

    assert image.imread(png).ndim == 3
    line = recommendation_line(result)
    assert line.startswith("recommended threshold: none") and "100 items" in line
