"""Tokenize a batch straight through the Rust tokenizer, skipping transformers' per-item Python.

``tokenizer(texts, padding=True, truncation=True, return_tensors="pt")`` on a fast
tokenizer spends more time turning each ``Encoding`` into Python lists and lists
into tensors than the Rust code spends tokenizing (most of tier 1's tokenize time
for a near-free model: bench/RESULTS.md, section (3)). ``FastEncoder`` asks
the same backend for the same truncated encodings and builds the padded arrays with
numpy; the ids are identical (tests/common/test_encoding.py). Padding is one masked
numpy fill per field: the Rust padder cost more per item than filling the arrays
from unpadded encodings (section (3), session 3).
"""
from __future__ import annotations

import copy
import logging
from itertools import chain
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

_FIELDS = ("input_ids", "attention_mask", "token_type_ids")


class FastEncoder:
    """A private copy of a fast tokenizer's backend, set to truncate; batches are padded to the longest."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.names = [name for name in tokenizer.model_input_names if name in _FIELDS]
        backend = copy.deepcopy(tokenizer.backend_tokenizer)  # never change the caller's settings
        backend.enable_truncation(max_length=max_length, strategy="longest_first",
                                  direction=getattr(tokenizer, "truncation_side", "right"))
        backend.no_padding()
        self.backend = backend
        self.pad = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0,
                    "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
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
        ids = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        width = int(lengths.max()) if len(ids) else 0
        columns = np.arange(width)
        filled = columns >= (width - lengths)[:, None] if self.left else columns < lengths[:, None]
        out = {}
        for name in self.names:
            if name == "attention_mask":
                out[name] = torch.from_numpy(filled.astype(np.int64))
                continue
            rows = ids if name == "input_ids" else [e.type_ids for e in encodings]
            array = np.full((len(ids), width), self.pad[name], dtype=np.int64)
            array[filled] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
            out[name] = torch.from_numpy(array)
        return out
