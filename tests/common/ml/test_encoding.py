"""The fast tokenize path must give the model exactly what the transformers call gives it."""
from __future__ import annotations

import numpy as np

from common.ml.encoding import FastEncoder
from common.ml.models import load_tier

TEXTS = ["a gripping , funny film", "dull", "the cast is fine but the script " * 40, "i hated every minute"]
PAIRS = ["it was good", "so bad", "fine", "the premise " * 60]


def reference(tier, texts, pairs):
    return {k: v.numpy() for k, v in tier.tokenizer(texts, pairs, padding=True, truncation=True,
                                                    max_length=tier.max_length, return_tensors="pt").items()}


def test_fast_inputs_equal_the_tokenizers_for_texts_and_pairs(tiny_models):
    tier = load_tier(str(tiny_models["big"]))
    assert isinstance(tier.encoder, FastEncoder)
    for pairs in (None, PAIRS):
        fast = {k: v.numpy() for k, v in tier.encode(TEXTS, pairs).items()}
        slow = reference(tier, TEXTS, pairs)
        assert fast.keys() == slow.keys() and "token_type_ids" in fast
        for key in slow:
            assert np.array_equal(fast[key], slow[key]), key
        assert fast["input_ids"].shape[1] == tier.max_length  # the long item was truncated


def test_the_callers_tokenizer_is_left_as_it_was(tiny_models):
    tier = load_tier(str(tiny_models["big"]))
    assert tier.tokenizer.backend_tokenizer.padding is None
    assert tier.tokenizer("a b c")["input_ids"] == tier.tokenizer.backend_tokenizer.encode("a b c").ids


def test_left_padding_tokenizers_are_padded_on_the_left(tiny_models):
    tier = load_tier(str(tiny_models["big"]))
    tier.tokenizer.padding_side = "left"
    encoder = FastEncoder.for_tokenizer(tier.tokenizer, tier.max_length)
    for pairs in (None, PAIRS):
        fast = {k: v.numpy() for k, v in encoder(TEXTS, pairs).items()}
        slow = reference(tier, TEXTS, pairs)
        assert fast["attention_mask"][1, 0] == 0 and fast["attention_mask"][1, -1] == 1
        for key in slow:
            assert np.array_equal(fast[key], slow[key]), key
