"""Temperature scaling recovers a known temperature and is saved where every loader finds it."""
from __future__ import annotations

import numpy as np
import pytest

from common.ml.calibration import calibrate_model, expected_calibration_error, fit_temperature, nll
from common.cascade import softmax
from common.errors import ConfigError, DataError
from common.ml.models import load_tier


def _overconfident(t_true: float, n: int = 20000, seed: int = 0):
    """Logits whose labels were drawn from softmax(logits / t_true): the right answer is t_true."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, size=(n, 3))
    probs = softmax(logits, t_true)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return logits, labels


def test_fit_recovers_the_true_temperature():
    logits, labels = _overconfident(2.5)
    result = fit_temperature(logits, labels)
    assert result.temperature == pytest.approx(2.5, rel=0.08)
    assert result.nll_after < result.nll_before and result.ece_after < result.ece_before
    assert nll(logits, labels, result.temperature) == pytest.approx(result.nll_after)


def test_a_calibrated_model_stays_near_one():
    logits, labels = _overconfident(1.0, seed=1)
    assert fit_temperature(logits, labels).temperature == pytest.approx(1.0, rel=0.08)


def test_ece_is_zero_for_perfect_confident_answers():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0


def test_bad_inputs():
    with pytest.raises(ConfigError):
        fit_temperature(np.zeros((3, 2)), [0, 1])
    with pytest.raises(DataError, match="at least two"):
        fit_temperature(np.zeros((1, 2)), [0])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fit_temperature(np.zeros((2, 2)), [0, 5])


def test_calibrate_model_writes_the_temperature_that_load_tier_applies(tiny_models, tmp_path):
    import shutil

    model_dir = shutil.copytree(tiny_models["small"], tmp_path / "small")
    texts = ["a fine film", "dull and long", "great fun", "awful"] * 10
    result = calibrate_model(model_dir, texts, None, [0, 1, 0, 1] * 10)
    assert load_tier(str(model_dir)).temperature == pytest.approx(result.temperature)
    assert result.nll_after <= result.nll_before + 1e-9
