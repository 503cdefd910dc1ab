"""Unlabelled sentences made from the training texts, for a teacher to label before distillation.

A student learns where it agrees with its teacher only on the inputs it is shown.
Phrase-level training sets (SST-2 train is mostly short treebank phrases) teach it
short inputs, while the corpora it then routes hold whole sentences, where the two
disagree most. Both makers here draw only on the training texts, so nothing held out
leaks in, and leave the labels to the teacher: the placeholder label id is 0.
"""
from __future__ import annotations

import random

import numpy as np

from common.errors import ConfigError
from common.ml.training import TrainingData

# Joins between two clauses, weighted towards the turns (but, though) where a sentence's
# sentiment is decided by how its parts combine.
CONNECTORS = (", but", " but", ", though", ", and", " and", ";", ",", ". yet", ", although", " while")


def word_spans(data: TrainingData, count: int, seed: int) -> list[str]:
    """``count`` random spans of three or more consecutive words of the texts."""
    rng = random.Random(seed)
    candidates = [words for words in (text.split() for text in data.texts) if len(words) > 3]
    spans: list[str] = []
    while candidates and len(spans) < count:
        words = rng.choice(candidates)
        start = rng.randrange(0, len(words) - 2)
        end = rng.randrange(start + 3, len(words) + 1)
        spans.append(" ".join(words[start:end]))
    return spans


def compositions(data: TrainingData, count: int, seed: int, max_words: int = 40) -> list[str]:
    """``count`` sentence-length texts, each two or three training texts joined by a connector."""
    rng = random.Random(seed)
    texts = [text.strip() for text in data.texts if text.strip()]
    made: list[str] = []
    while texts and len(made) < count:
        parts = [rng.choice(texts) for _ in range(rng.choice((2, 2, 3)))]
        text = parts[0]
        for part in parts[1:]:
            text += f"{rng.choice(CONNECTORS)} {part}"
        made.append(" ".join(text.split()[:max_words]))
    return made


AUGMENTERS = {"spans": word_spans, "compositions": compositions}


def augmented(data: TrainingData, count: int, seed: int, kind: str = "compositions") -> TrainingData:
    """``data`` followed by ``count`` made-up texts of ``kind``, labelled 0 until ``teacher_labelled``."""
    if count < 0:
        raise ConfigError(f"--augment must be 0 or more, not {count}")
    if count and data.pairs:
        raise ConfigError("--augment makes single sentences; this task has sentence pairs")
    if kind not in AUGMENTERS:
        raise ConfigError(f"unknown augmentation {kind!r} (choose from {', '.join(AUGMENTERS)})")
    extra = AUGMENTERS[kind](data, count, seed) if count else []
    ids = np.concatenate([data.label_ids, np.zeros(len(extra), dtype=data.label_ids.dtype)])
    return TrainingData(data.texts + extra, data.pairs, ids, list(data.labels))


def teacher_labelled(data: TrainingData, teacher: np.ndarray, made_from: int) -> TrainingData:
    """The made-up texts (from index ``made_from`` on) take the teacher's answer as their label, so
    a loss that mixes in hard labels never learns the placeholder."""
    ids = data.label_ids.copy()
    ids[made_from:] = teacher[made_from:].argmax(axis=1)
    return TrainingData(data.texts, data.pairs, ids, list(data.labels))
