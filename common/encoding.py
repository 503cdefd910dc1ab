"""Tokenize a batch straight through the Rust tokenizer, skipping transformers' per-item Python.

``tokenizer(texts, padding=True, truncation=True, return_tensors="pt")`` on a fast
tokenizer spends more time turning each ``Encoding`` into Python lists and lists
into tensors than the Rust code spends tokenizing (measured: ~60% of tier 1's
tokenize time for a near-free model, bench/queue_ceiling.py). ``FastEncoder`` asks
the same backend for the same padded, truncated encodings and builds the arrays
with numpy; the ids are identical (tests/common/test_encoding.py).
"""
from __future__ import annotations

import copy
import logging
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class FastEncoder:
    """A private copy of a fast tokenizer's backend, set to pad to the longest and truncate."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.names = [name for name in tokenizer.model_input_names if name in _FIELDS]
        backend = copy.deepcopy(tokenizer.backend_tokenizer)  # never change the caller's settings
        backend.enable_truncation(max_length=max_length, strategy="longest_first",
                                  direction=getattr(tokenizer, "truncation_side", "right"))
        backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                               pad_type_id=getattr(tokenizer, "pad_token_type_id", 0),
                               direction=getattr(tokenizer, "padding_side", "right"))
        self.backend = backend
        # tokenizers >= 0.20: the same encodings without character offsets, which nothing here reads
        self._encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    @classmethod
    def for_tokenizer(cls, tokenizer, max_length: int) -> "FastEncoder | None":
        """An encoder when ``tokenizer`` is a fast one with a pad token; else None (use the tokenizer)."""
        if getattr(tokenizer, "backend_tokenizer", None) is None or tokenizer.pad_token_id is None:
            return None
        if "input_ids" not in tokenizer.model_input_names:
            return None
        return cls(tokenizer, max_length)

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
        encodings = self._encode_batch(inputs)
        return {name: torch.from_numpy(np.array([getattr(e, _FIELDS[name]) for e in encodings], dtype=np.int64))
                for name in self.names}
