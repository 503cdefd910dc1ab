"""The routing rule, checked against a direct computation on the models' own logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from common.cascade import Cascade, combine, escalate_mask, softmax, validate_threshold
from common.errors import ConfigError
from common.labels import align_labels
from common.ml.models import load_tier

TEXTS = [f"review {i}: " + " ".join(["good", "bad", "film", "plot", "dull", "great"][j % 6] for j in range(i % 9 + 1))
         for i in range(120)]


def direct_probs(model_dir, texts) -> np.ndarray:
    """Plain transformers, one item at a time: no batching, sorting or padding involved."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = [model(**tok(t, return_tensors="pt")).logits[0].numpy() for t in texts]
    return softmax(np.stack(logits))


def _threshold_in_a_gap(confidence: np.ndarray) -> float:
    """A threshold near the median that no confidence is within 1e-4 of, so batching's
    last-bit float differences cannot flip an item across it."""
    values = np.unique(confidence.round(6))
    gaps = [(abs(i - len(values) / 2), (a + b) / 2) for i, (a, b) in enumerate(zip(values, values[1:]))
            if b - a > 2e-4]
    return float(min(gaps)[1])


@pytest.fixture(scope="module")
def tiers(tiny_models):
    small = load_tier(str(tiny_models["small"]), batch_size=7)
    big = load_tier(str(tiny_models["big"]), batch_size=5)
    return small, big, align_labels(small.labels, big.labels)


def test_routes_exactly_the_items_below_the_threshold(tiers, tiny_models):
    small, big, alignment = tiers
    probs = direct_probs(tiny_models["small"], TEXTS)
    threshold = _threshold_in_a_gap(probs.max(axis=1))
    out = Cascade(small, big, threshold, alignment).run(TEXTS)
    expected = probs.max(axis=1) < threshold
    assert 0 < expected.sum() < len(TEXTS)  # the case is not degenerate
    np.testing.assert_array_equal(out.tiers == 2, expected)
    np.testing.assert_array_equal(out.label_ids[~expected], probs.argmax(axis=1)[~expected])
    np.testing.assert_allclose(out.scores[~expected], probs.max(axis=1)[~expected], rtol=1e-4)


def test_threshold_one_reproduces_the_big_model(tiers, tiny_models):
    small, big, alignment = tiers
    out = Cascade(small, big, 1.0, alignment).run(TEXTS)
    big_probs = direct_probs(tiny_models["big"], TEXTS)
    assert (out.tiers == 2).all()
    np.testing.assert_array_equal(out.label_ids, big_probs.argmax(axis=1))
    np.testing.assert_allclose(out.scores, big_probs.max(axis=1), rtol=1e-4)


def test_lowest_threshold_keeps_everything_at_tier_one(tiers):
    small, big, alignment = tiers
    out = Cascade(small, big, 1 / small.num_labels, alignment).run(TEXTS)
    assert (out.tiers == 1).all()
    assert out.big_seconds < 0.05  # tier 2 never ran


def test_records_say_label_score_and_tier(tiers):
    small, big, alignment = tiers
    records = Cascade(small, big, 0.7, alignment).run(TEXTS[:10]).records()
    assert len(records) == 10
    for rec in records:
        assert rec["label"] in ("negative", "positive") and rec["tier"] in (1, 2) and 0.5 <= rec["score"] <= 1


def test_threshold_one_escalates_even_saturated_confidence():
    probs = np.array([[1.0, 0.0], [0.2, 0.8]])
    assert escalate_mask(probs, 1.0).all()
    assert escalate_mask(probs, 0.9).tolist() == [False, True]
    assert escalate_mask(probs, 0.8).tolist() == [False, False]  # "at or above" stays


@pytest.mark.parametrize("threshold, labels", [(0.49, 2), (1.01, 2), (0.3, 3), (-1, 4)])
def test_threshold_out_of_range(threshold, labels):
    with pytest.raises(ConfigError, match="between"):
        validate_threshold(threshold, labels)


def test_threshold_range_follows_label_count():
    assert validate_threshold(1 / 3, 3) == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="regression"):
        validate_threshold(0.9, 1)


def test_combine_maps_each_tier_through_the_alignment():
    alignment = align_labels(["a", "b"], ["b", "a"])  # big's outputs are in the other order
    small = np.array([[0.9, 0.1], [0.4, 0.6]])
    big = np.array([[0.3, 0.7]])  # big says "a" for the escalated item
    ids, scores, tiers = combine(small, big, np.array([False, True]), alignment)
    assert ids.tolist() == [0, 0] and tiers.tolist() == [1, 2]
    assert scores.tolist() == pytest.approx([0.9, 0.7])


def test_softmax_temperature_flattens():
    logits = np.array([[2.0, 0.0]])
    assert softmax(logits, 2.0).max() < softmax(logits).max()
    np.testing.assert_allclose(softmax(logits).sum(), 1.0)
