"""The deferral head: fitted to where the teacher disagrees, saved beside the model, routed on by every caller."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.cascade import Cascade, escalate_mask
from common.errors import ConfigError, DataError, ModelLoadError
from common.labels import align_labels
from common.ml.deferral import (DEFERRAL_FILE, DeferralHead, auroc, features, fit_head, routed_probabilities)
from common.ml.models import load_tier
from common.ml.training import (TRAINING_FILE, TrainingData, TrainSettings, deferral_split, load_task_training_data, subsample,
                                 teacher_logits, train_model)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items whose agreement depends on one hidden feature max softmax cannot see."""
    rng = np.random.default_rng(seed)
    pooled = rng.normal(size=(n, 8))
    logits = np.column_stack([np.zeros(n), rng.normal(2.0, 1.0, size=n)])
    agree = rng.random(n) < 1.0 / (1.0 + np.exp(-(1.5 + 3.0 * pooled[:, 0])))
    return features(logits, pooled), agree, logits


def test_the_head_finds_disagreement_that_max_softmax_cannot_see():
    x, agree, _ = _synthetic(3000, seed=0)
    head = fit_head(x, agree)
    test_x, test_agree, test_logits = _synthetic(2000, seed=1)
    softmax_rank = auroc(test_logits.max(axis=1) - test_logits.min(axis=1), test_agree)
    head_rank = auroc(head.agreement(test_x), test_agree)
    assert head_rank > softmax_rank + 0.2
    assert head.report["cv_auroc"] > head.report["max_softmax_auroc"]
    assert head.report["disagreements"] == int((~agree).sum())


def test_fitting_needs_both_outcomes():
    x, _, _ = _synthetic(50, seed=2)
    with pytest.raises(DataError, match="disagreement"):
        fit_head(x, np.ones(50, dtype=bool))


def test_routed_probabilities_keep_the_label_and_carry_the_agreement():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    agreement = np.array([0.2, 0.95, 0.51])
    routed = routed_probabilities(probs, agreement)
    assert (routed.argmax(axis=1) == probs.argmax(axis=1)).all()
    np.testing.assert_allclose(routed.sum(axis=1), 1.0)
    np.testing.assert_allclose(routed.max(axis=1)[1:], [0.95, 0.51])
    assert 0.5 < routed[0].max() < 0.5001  # below 1/L: raised just above it, still escalated by any T > 0.5001
    three = routed_probabilities(np.array([[0.2, 0.5, 0.3]]), np.array([0.1]))
    assert three.argmax() == 1 and three.max() > 1 / 3


def test_a_head_round_trips_and_a_broken_file_is_one_clear_error(tmp_path):
    x, agree, _ = _synthetic(400, seed=3)
    head = fit_head(x, agree)
    head.save(tmp_path)
    again = DeferralHead.load(tmp_path)
    np.testing.assert_allclose(again.agreement(x), head.agreement(x))
    assert DeferralHead.load(tmp_path / "missing") is None
    (tmp_path / DEFERRAL_FILE).write_text('{"mean": [1, 2], "scale": [1], "weights": [1, 2], "bias": 0}')
    with pytest.raises(ModelLoadError, match=DEFERRAL_FILE):
        DeferralHead.load(tmp_path)


def test_the_split_is_seeded_and_disjoint():
    train, held = deferral_split(100, 0.2, seed=4)
    assert len(held) == 20 and not set(train) & set(held) and len(train) + len(held) == 100
    assert deferral_split(100, 0.2, seed=4) == (train, held)
    assert deferral_split(100, 0.0, seed=4) == (list(range(100)), [])


@pytest.fixture(scope="module")
def student_with_head(tiny_models, glue_dir, tmp_path_factory):
    data = subsample(load_task_training_data("sst2", glue_dir), 160, seed=5)
    soft = teacher_logits(str(tiny_models["big"]), data, progress=False)
    soft[::3] = soft[::3, ::-1]  # a teacher that disagrees with anything learnable on a third of the items
    out = tmp_path_factory.mktemp("deferral") / "student"
    settings = TrainSettings(model=str(tiny_models["big"]), output=str(out), layer_num=1, epochs=1, batch_size=16,
                             learning_rate=1e-3, deferral_holdout=0.4)
    return train_model(settings, data, teacher_logits=soft, progress=False), data


@pytest.mark.slow
def test_training_with_a_holdout_saves_a_head_that_every_router_uses(student_with_head, tiny_models):
    out, data = student_with_head
    assert (out / DEFERRAL_FILE).is_file()
    small = load_tier(str(out))
    assert small.deferral is not None
    texts = data.texts[:40]
    logits, pooled = small.run(texts, pooled=True)
    probs = small.probabilities(texts)
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all()
    expected = np.maximum(small.deferral.agreement(features(logits, pooled)), 0.5 + 1e-6)
    np.testing.assert_allclose(probs.max(axis=1), expected, atol=1e-5)
    big = load_tier(str(tiny_models["big"]))
    threshold = float(np.median(probs.max(axis=1)))
    out_cascade = Cascade(small, big, threshold, align_labels(small.labels, big.labels)).run(texts)
    assert ((out_cascade.tiers == 2) == escalate_mask(probs, threshold)).all()


@pytest.mark.slow
def test_batching_does_not_move_the_routing_score(student_with_head):
    out, data = student_with_head
    one = load_tier(str(out), batch_size=1).probabilities(data.texts[:12])
    many = load_tier(str(out), batch_size=12).probabilities(data.texts[:12])
    np.testing.assert_allclose(one, many, atol=1e-5)


@pytest.mark.slow
def test_cutting_layers_at_load_time_drops_the_head(student_with_head):
    out, _ = student_with_head
    assert load_tier(str(out), layer_num=1).deferral is None


def test_a_holdout_without_a_teacher_is_refused(tiny_models, tmp_path):
    data = TrainingData(["good", "bad"] * 8, None, np.array([1, 0] * 8), ["negative", "positive"])
    settings = TrainSettings(model=str(tiny_models["small"]), output=str(tmp_path / "x"), deferral_holdout=0.2)
    with pytest.raises(ConfigError, match="--teacher"):
        train_model(settings, data, progress=False)


def test_too_few_disagreements_save_no_head_and_say_why(tiny_models, glue_dir, tmp_path):
    data = subsample(load_task_training_data("sst2", glue_dir), 40, seed=6)
    agreeing = teacher_logits(str(tiny_models["small"]), data, progress=False)  # the student's own answers
    settings = TrainSettings(model=str(tiny_models["small"]), output=str(tmp_path / "s"), epochs=1, batch_size=40,
                             learning_rate=1e-6, deferral_holdout=0.25)
    out = train_model(settings, data, teacher_logits=agreeing, progress=False)
    record = json.loads((out / TRAINING_FILE).read_text())
    assert not (out / DEFERRAL_FILE).exists() and load_tier(str(out)).deferral is None
    assert "disagreement" in record["deferral"]["skipped"]
