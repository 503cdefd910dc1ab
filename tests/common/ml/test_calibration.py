"""Temperature scaling recovers a known temperature and is saved, with a fingerprint of its items,
where every loader finds it."""
from __future__ import annotations

import numpy as np
import pytest

from common.ml.calibration import (calibrate_model, calibration_overlap, expected_calibration_error, fingerprint,
                                   fit_temperature, nll, read_fingerprint)
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


def test_the_calibration_remembers_which_items_it_saw(tiny_models, tmp_path):
    import shutil

    model_dir = shutil.copytree(tiny_models["small"], tmp_path / "small")
    texts = [f"item {i}" for i in range(30)]
    calibrate_model(model_dir, texts[:20], None, [0, 1] * 10)
    assert len(read_fingerprint(model_dir)) == 20
    assert calibration_overlap(model_dir, texts[10:], None) == 10
    assert calibration_overlap(model_dir, texts[20:], None) == 0
    assert load_tier(str(model_dir)).temperature != 1.0  # the temperature is still read beside the fingerprint


def test_an_older_calibration_file_has_no_fingerprint_and_still_loads(tiny_models, tmp_path):
    import shutil

    from common.ml.models import write_temperature

    model_dir = shutil.copytree(tiny_models["small"], tmp_path / "small")
    write_temperature(model_dir, 1.5)
    assert read_fingerprint(model_dir) is None and calibration_overlap(model_dir, ["a"], None) is None
    assert load_tier(str(model_dir)).temperature == 1.5
    assert calibration_overlap(tmp_path / "no-model", ["a"], None) is None


def test_fingerprints_tell_pairs_apart_and_a_broken_one_is_named(tmp_path):
    assert len(fingerprint(["ab", "a"], ["c", "bc"])) == 2
    assert len(fingerprint(["same", "same", "other"])) == 2
    (tmp_path / "tango_calibration.json").write_text('{"temperature": 1.0, "fitted_on": {"hashes": 3}}')
    with pytest.raises(DataError, match="fingerprint"):
        read_fingerprint(tmp_path)
