"""Let a classifier's head read the mean of the last hidden states instead of the first token.

all-MiniLM-L6-v2 and all-mpnet-base-v2 were trained as sentence encoders through a
mean over their tokens; their first token means nothing in particular, and
``BertForSequenceClassification`` puts an untrained tanh pooler on it. Fine-tuned
through the first token they must first learn a new sentence summary from a few
thousand examples, and rebuilds land wherever that went. Reading the mean keeps
the summary the backbone was trained to give.

The choice is recorded in the checkpoint's config (``tango_pooling``), and every
loader here applies it; a plain ``AutoModelForSequenceClassification`` ignores the
key and would read the first token, so such checkpoints are loaded through tango.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from common.errors import ConfigError, ModelLoadError

POOLING_KEY = "tango_pooling"
POOLINGS = ("auto", "cls", "mean")
ST_POOLING = "1_Pooling/config.json"  # where sentence-transformers checkpoints say how they pool


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each item's mean token state over its real tokens, so padding never changes it."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MeanPooled(nn.Module):
    """A sequence classifier whose head reads the attention-masked mean of the last hidden states.

    Everything else (``config``, ``save_pretrained``, ``base_model``, embeddings) is the
    wrapped model's, so a wrapped model trains, saves, quantizes and is cut like the
    plain one, and its checkpoint is an ordinary one with ``tango_pooling: mean``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, "pre_classifier") or not hasattr(model, "classifier"):
            raise ModelLoadError(f"mean pooling does not know the head of {type(model).__name__}; "
                                 "use --pooling cls")
        self.inner = model
        # decided once: int8 quantization later swaps the Linear for a class that is not an nn.Linear
        self.head_reads_sequence = not isinstance(model.classifier, nn.Linear)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")  # absent while copy or pickle rebuild us
            if inner is None:
                raise
            return getattr(inner, name)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **inputs) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs = self.inner.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                        output_hidden_states=output_hidden_states, **inputs)
        mean = masked_mean(outputs.last_hidden_state, attention_mask)
        return SequenceClassifierOutput(logits=self._head(mean), hidden_states=outputs.hidden_states)

    def _head(self, mean: torch.Tensor) -> torch.Tensor:
        classifier = self.inner.classifier
        if self.head_reads_sequence:  # RoBERTa/MPNet/ELECTRA heads read position 0 of what they get
            return classifier(mean[:, None, :])
        dropout = getattr(self.inner, "dropout", None)  # BERT: dropout, then a linear layer over the pooler's output
        return classifier(dropout(mean) if dropout is not None else mean)


def with_pooling(model: nn.Module, pooling: str | None = None) -> nn.Module:
    """The model as its config says it pools, or as ``pooling`` says (then recorded in its config)."""
    inner = model.inner if isinstance(model, MeanPooled) else model
    if pooling is not None:
        setattr(inner.config, POOLING_KEY, pooling)
    return MeanPooled(inner) if getattr(inner.config, POOLING_KEY, "cls") == "mean" else inner


def resolve_pooling(pooling: str, backbone: str) -> str:
    """``auto``: mean for a backbone that a sentence-transformers config says was trained mean-pooled,
    or whose own tango config says so; the first token otherwise."""
    if pooling not in POOLINGS:
        raise ConfigError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling != "auto":
        return pooling
    own = _read_json(backbone, "config.json").get(POOLING_KEY)
    if own:
        return own
    st = _read_json(backbone, ST_POOLING)
    return "mean" if st.get("pooling_mode_mean_tokens") else "cls"


def _read_json(name_or_path: str, filename: str) -> dict:
    """A small JSON file of a local checkpoint or a hub one; {} when it has none."""
    path = Path(name_or_path) / filename
    if not path.is_file() and not os.path.isdir(name_or_path):
        try:
            from transformers.utils import cached_file

            found = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False)
        except (OSError, ValueError):
            found = None
        path = Path(found) if found else path
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
