"""Threshold sweeps: the simulated cascade, the recommendation's constraint, the CSV and the plot."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from common.errors import ConfigError
from common.ml.sweep import candidate_thresholds, plot, recommend, recommendation_line, sweep, write_csv

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


def test_recommendation_meets_its_constraint_with_the_known_answer():
    probs, big_preds, refs = _known_case()
    result = sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=1.0)
    best = result.recommended
    assert result.big_metric == 100.0 and result.small_metric == 97.0
    assert best.metric >= result.big_metric - 1.0
    assert 0.85 < best.threshold <= 0.855 + 1e-9
    assert best.tier2_fraction == pytest.approx(0.71)
    assert best.speedup == pytest.approx(1.0 / (0.01 + 0.71))
    assert all(r.speedup <= best.speedup for r in result.rows if r.metric >= result.big_metric - 1.0)


def test_zero_drop_needs_every_error_escalated():
    probs, big_preds, refs = _known_case()
    best = sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=0.0).recommended
    assert best.metric == 100.0 and 0.9 < best.threshold <= 0.905 + 1e-9


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


def test_csv_and_png_are_written(tmp_path):
    probs, big_preds, refs = _known_case()
    result = sweep(probs, big_preds, refs, 0.01, 1.0, max_drop=1.0)
    rows = list(csv.DictReader(write_csv(result, tmp_path / "s.csv").open()))
    assert len(rows) == len(result.rows) and set(rows[0]) == {"threshold", "accuracy", "tier2_fraction", "speedup"}
    png = plot(result, tmp_path / "s.png", "synthetic")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    from matplotlib import image

    assert image.imread(png).ndim == 3
    line = recommendation_line(result)
    assert line.startswith("recommended threshold") and line.endswith("x")
