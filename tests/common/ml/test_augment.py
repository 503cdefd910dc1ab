"""Made-up distillation texts: drawn only from the training texts, seeded, labelled by the teacher."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from common.errors import ConfigError
from common.ml.augment import CONNECTORS, augmented, compositions, teacher_labelled, word_spans
from common.ml.training import TrainingData

WORDS = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
TEXTS = st.lists(st.lists(WORDS, min_size=1, max_size=12).map(" ".join), min_size=1, max_size=20)


def data(texts: list[str]) -> TrainingData:
    return TrainingData(list(texts), None, np.arange(len(texts)) % 2, ["neg", "pos"])


def split_on_connectors(text: str) -> list[str]:
    for joint in sorted(CONNECTORS, key=len, reverse=True):
        text = text.replace(joint + " ", "\x00")
    return text.split("\x00")


@settings(max_examples=60, deadline=None)
@given(TEXTS, st.integers(0, 30), st.integers(0, 5))
def test_compositions_join_two_or_three_training_texts(texts, count, seed):
    made = compositions(data(texts), count, seed, max_words=1000)
    assert len(made) == count
    for text in made:
        parts = split_on_connectors(text)
        assert 2 <= len(parts) <= 3 and all(part in texts for part in parts)


def test_compositions_are_capped_and_seeded():
    source = data(["one two three four five six"] * 3)
    assert all(len(t.split()) <= 8 for t in compositions(source, 50, 0, max_words=8))
    assert compositions(source, 20, 1) == compositions(source, 20, 1) != compositions(source, 20, 2)


@settings(max_examples=60, deadline=None)
@given(TEXTS, st.integers(0, 30), st.integers(0, 5))
def test_spans_are_three_or_more_consecutive_words_of_a_text(texts, count, seed):
    for span in word_spans(data(texts), count, seed):
        words = span.split()
        assert len(words) >= 3 and any(f" {span} " in f" {text} " for text in texts)


def test_augmented_appends_placeholders_and_the_teacher_labels_only_them():
    source = data(["a fine film", "a dull film", "slow but kind"])
    grown = augmented(source, 4, seed=0)
    assert grown.texts[:3] == source.texts and len(grown) == 7 and list(grown.label_ids[3:]) == [0] * 4
    teacher = np.zeros((7, 2))
    teacher[:, 1] = 1.0  # the teacher says "pos" everywhere
    labelled = teacher_labelled(grown, teacher, made_from=3)
    assert list(labelled.label_ids) == [0, 1, 0, 1, 1, 1, 1]
    assert augmented(source, 0, seed=0).texts == source.texts


@pytest.mark.parametrize("count, pairs, kind, message", [
    (-1, None, "compositions", "--augment must be 0 or more"),
    (3, ["x", "y", "z"], "compositions", "sentence pairs"),
    (3, None, "shuffles", "unknown augmentation"),
])
def test_bad_requests_are_refused(count, pairs, kind, message):
    source = TrainingData(["a b c d", "e f g h", "i j k l"], pairs, np.zeros(3, dtype=np.int64), ["x"])
    with pytest.raises(ConfigError, match=message):
        augmented(source, count, seed=0, kind=kind)
