"""Run a tier on ONNX Runtime instead of torch, from an export cached beside the model.

On a CPU, ONNX Runtime fuses a BERT's attention and layer norms and runs its
matrix products without torch's per-op dispatch, so the same weights label more
items per second per core. The export is made once per model, depth and
precision, from the torch model as tango loads it (its pooling included), with
two outputs: the logits and the mean-pooled last hidden state that a deferral
head reads. It is cached beside the model (or under ``~/.cache/tango/onnx`` when
that directory is not writable, as for a hub model) and made again when the
model's files are newer than it. Its int8 variant is ONNX Runtime's dynamic
quantization of the same export.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from common.errors import ModelLoadError, first_line
from common.ml.pooling import masked_mean

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
OPSET = 17
CACHE_DIR = "tango_onnx"
OUTPUTS = ("logits", "pooled")
_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


@dataclass
class OnnxOutput:
    """What a forward pass gives ``TierModel``: the logits and, already pooled, the last hidden state."""

    logits: torch.Tensor
    pooled: torch.Tensor


class OnnxClassifier:
    """An ONNX Runtime session called like the torch classifier it was exported from."""

    def __init__(self, path: Path, config, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.inputs = tuple(arg.name for arg in self.session.get_inputs())  # what the export was given
        self.path = path

    def __call__(self, output_hidden_states: bool = False, **encoded: torch.Tensor) -> OnnxOutput:
        feeds = {name: encoded[name].cpu().numpy().astype(np.int64, copy=False) for name in self.inputs}
        logits, pooled = self.session.run(list(OUTPUTS), feeds)
        return OnnxOutput(torch.from_numpy(logits), torch.from_numpy(pooled))


class _Exported(nn.Module):
    """The classifier with the two outputs the export keeps, inputs passed by position."""

    def __init__(self, model: nn.Module, inputs: Sequence[str]) -> None:
        super().__init__()
        self.model, self.inputs = model, tuple(inputs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = dict(zip(self.inputs, tensors))
        outputs = self.model(**encoded, output_hidden_states=True)
        return outputs.logits, masked_mean(outputs.hidden_states[-1], encoded["attention_mask"])


def export_path(name_or_path: str, layer_num: int | None, int8: bool) -> Path:
    """Where the export of this model, depth and precision lives."""
    name = f"model-L{layer_num or 'all'}{'-int8' if int8 else ''}.onnx"
    local = Path(name_or_path)
    if local.is_dir() and os.access(local, os.W_OK):
        return local / CACHE_DIR / name
    key = hashlib.sha256(str(local.resolve() if local.is_dir() else name_or_path).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "tango" / "onnx" / key / name


def is_fresh(path: Path, name_or_path: str) -> bool:
    """The export exists and is newer than every file of the model it was made from."""
    if not path.is_file():
        return False
    sources = [Path(name_or_path) / f for f in _MODEL_FILES if (Path(name_or_path) / f).is_file()]
    return all(source.stat().st_mtime <= path.stat().st_mtime for source in sources)


def export(model: nn.Module, sample: dict[str, torch.Tensor], path: Path, int8: bool = False) -> None:
    """Write the model's ONNX export (and its int8 variant) to ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = list(sample)
    fp32 = path.with_name(path.name.replace("-int8", "")) if int8 else path
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs} | {name: {0: "batch"} for name in OUTPUTS}
    partial = fp32.with_suffix(".partial")
    log.info("exporting %s to ONNX at %s (once per model)", type(model).__name__, fp32)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes; the tests check the outputs
            torch.onnx.export(_Exported(model.eval(), inputs), tuple(sample[name] for name in inputs), str(partial),
                              input_names=inputs, output_names=list(OUTPUTS), dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many kinds; what matters is which model and why
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"cannot export {type(model).__name__} to ONNX: {first_line(exc)}") from exc
    partial.replace(fp32)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8)
        partial.replace(path)


def require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelLoadError("--backend onnx needs ONNX Runtime: pip install -e '.[onnx]'") from None
