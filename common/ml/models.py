"""Load a tier's model once and run batched inference on it.

Both tiers are ordinary ``AutoModelForSequenceClassification`` checkpoints, from a
local directory or the Hugging Face hub. A small tier can be cut from a deeper
checkpoint with ``layer_num`` (the TangoBERT recipe), so the layer surgery
lives here too.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from common.ml.devices import resolve_device
from common.ml.encoding import FastEncoder
from common.ml.pooling import masked_mean, with_pooling
from common.ml.progress import track
from common.errors import ModelLoadError, first_line
from common.labels import missing_directory

if TYPE_CHECKING:
    from common.ml.deferral import DeferralHead

log = logging.getLogger(__name__)

CALIBRATION_FILE = "tango_calibration.json"
DEFAULT_MAX_LENGTH = 512
# Where the encoder's layer list sits under ``model.base_model`` for the
# architectures people cascade (BERT/RoBERTa/MPNet/ELECTRA, DistilBERT, others).
_LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "layer")


@dataclass
class TierModel:
    """A loaded classifier plus the settings one tier runs it with."""

    name: str
    model: nn.Module
    tokenizer: object
    device: torch.device
    batch_size: int = 32
    max_length: int = DEFAULT_MAX_LENGTH
    temperature: float = 1.0
    deferral: "DeferralHead | None" = None  # routes on agreement with tier 2 instead of max softmax
    # called with (items, seconds) after every forward pass: worker metrics hang here
    on_batch: Callable[[int, float], None] | None = None
    labels: list[str] = field(init=False)
    encoder: FastEncoder | None = field(init=False)

    def __post_init__(self) -> None:
        id2label = self.model.config.id2label or {}
        self.labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(self.num_labels)]
        self.encoder = FastEncoder.for_tokenizer(self.tokenizer, self.max_length)

    def encode(self, texts: list[str], pairs: list[str] | None) -> dict[str, torch.Tensor]:
        """Padded, truncated model inputs; the fast path when the tokenizer has a Rust backend."""
        if self.encoder is not None:
            return self.encoder(texts, pairs)
        return dict(self.tokenizer(texts, pairs, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def num_layers(self) -> int:
        if isinstance(self.model, nn.Module):
            return len(find_layers(self.model)[2])
        return int(self.model.config.num_hidden_layers)  # an exported model: its config was cut with it

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
               progress: str | None = None) -> np.ndarray:
        """Raw logits, shape ``(len(texts), num_labels)``, in input order."""
        return self.run(texts, pairs, progress)[0]

    def run(self, texts: Sequence[str], pairs: Sequence[str] | None = None, progress: str | None = None,
            pooled: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, with ``pooled``, the mean-pooled last hidden state of every item, in input order.

        Batches are formed over items sorted by length so that dynamic padding
        pads each batch to a similar length; the output is put back in order.
        """
        n = len(texts)
        out = np.empty((n, self.num_labels), dtype=np.float32)
        hidden = np.empty((n, self.hidden_size), dtype=np.float32) if pooled else None
        if n == 0:
            return out, hidden
        order = sorted(range(n), key=lambda i: len(texts[i]) + (len(pairs[i]) if pairs else 0))
        batches = [order[s:s + self.batch_size] for s in range(0, n, self.batch_size)]
        with torch.inference_mode():
            for batch in track(batches, progress):
                out[batch], states = self._forward([texts[i] for i in batch],
                                                   [pairs[i] for i in batch] if pairs else None, pooled)
                if hidden is not None:
                    hidden[batch] = states
        return out, hidden

    def warm_up(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> None:
        """One tiny batch, so one-off costs (allocations, kernel choice) are not timed."""
        self.probabilities(texts[:2], pairs[:2] if pairs else None)

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                      progress: str | None = None) -> np.ndarray:
        """Softmax of the logits, divided by the calibration temperature first; with a deferral
        head, each row's max is the head's probability that tier 2 gives the same label."""
        from common.cascade import softmax

        logits, pooled = self.run(texts, pairs, progress, pooled=self.deferral is not None)
        probs = softmax(logits, self.temperature)
        if self.deferral is None:
            return probs
        from common.ml.deferral import features, routed_probabilities

        return routed_probabilities(probs, self.deferral.agreement(features(logits, pooled)))

    @property
    def hidden_size(self) -> int:
        return int(getattr(self.model.config, "hidden_size", 0) or self.model.config.dim)

    def _forward(self, texts: list[str], pairs: list[str] | None,
                 pooled: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        start = time.perf_counter()
        encoded = {k: v.to(self.device) for k, v in self.encode(texts, pairs).items()}
        outputs = self.model(**encoded, output_hidden_states=pooled)
        logits = outputs.logits.float().cpu().numpy()
        states = _states(outputs, encoded["attention_mask"]) if pooled else None
        if self.on_batch is not None:
            self.on_batch(len(texts), time.perf_counter() - start)
        return logits, states


def _states(outputs, mask: torch.Tensor) -> np.ndarray:
    """The mean-pooled last hidden state: pooled already by an exported model, else pooled here."""
    pooled = getattr(outputs, "pooled", None)
    pooled = pooled if pooled is not None else masked_mean(outputs.hidden_states[-1], mask)
    return pooled.float().cpu().numpy()


def load_tier(name_or_path: str, *, device: str | int | None = "cpu", batch_size: int = 32,
              layer_num: int | None = None, max_length: int | None = None,
              quantize: bool = False, precision: str = "fp32", backend: str = "torch") -> TierModel:
    """Load a sequence classifier and its tokenizer for one tier.

    ``layer_num`` keeps only the first N encoder layers. A calibration
    temperature (``tango_calibration.json``) and a deferral head
    (``tango_deferral.json``) saved next to the model are applied.
    ``quantize`` (CPU) and ``precision`` (GPU) trade a little accuracy for speed;
    see ``optimize``. ``backend="onnx"`` runs it on ONNX Runtime (``common.ml.onnx_backend``).
    """
    if batch_size < 1:
        raise ModelLoadError(f"batch size must be at least 1, got {batch_size}")
    if backend == "onnx":
        return _load_onnx(name_or_path, device, batch_size, layer_num, max_length, quantize, precision)
    if backend != "torch":
        raise ModelLoadError(f"--backend must be torch or onnx, got {backend!r}")
    torch_device = resolve_device(device)
    model, tokenizer = load_pretrained(name_or_path)
    if layer_num is not None:
        truncate_layers(model, layer_num)
    model = optimize(model.to(torch_device).eval(), torch_device, quantize=quantize, precision=precision)
    return TierModel(name=str(name_or_path), model=model, tokenizer=tokenizer, device=torch_device,
                     batch_size=batch_size, max_length=max_length or _max_length(model, tokenizer),
                     temperature=read_temperature(name_or_path), deferral=_deferral(name_or_path, layer_num))


def _load_onnx(name_or_path: str, device: str | int | None, batch_size: int, layer_num: int | None,
               max_length: int | None, int8: bool, precision: str) -> TierModel:
    """The tier on ONNX Runtime, exporting the torch model first when no fresh export is cached."""
    from common.ml.onnx_backend import OnnxClassifier, export, export_path, is_fresh, require_onnxruntime

    require_onnxruntime()
    if str(device or "cpu") != "cpu" or precision != "fp32":
        raise ModelLoadError("--backend onnx runs on the CPU, in fp32 or (with --quantize) int8")
    device = torch.device("cpu")
    path = export_path(name_or_path, layer_num, int8)
    if is_fresh(path, name_or_path):
        config, tokenizer = load_config_and_tokenizer(name_or_path)
    else:
        model, tokenizer = load_pretrained(name_or_path, attn_implementation="eager")  # sdpa traces wrong
        if layer_num is not None:
            truncate_layers(model, layer_num)
        sample = TierModel(str(name_or_path), model, tokenizer, device, max_length=_max_length(model, tokenizer))
        export(model, sample.encode(list(EXPORT_SAMPLE), None), path, int8)
        config = model.config
    if layer_num is not None:
        config.num_hidden_layers = layer_num
    classifier = OnnxClassifier(path, config, torch.get_num_threads())
    return TierModel(name=str(name_or_path), model=classifier, tokenizer=tokenizer, device=device,
                     batch_size=batch_size, max_length=max_length or _max_length(classifier, tokenizer),
                     temperature=read_temperature(name_or_path), deferral=_deferral(name_or_path, layer_num))


EXPORT_SAMPLE = ("a short one", "a longer sentence, so that the sample batch is padded")


def _deferral(name_or_path: str, layer_num: int | None) -> "DeferralHead | None":
    """The saved head, unless the model is cut at load time: it was fitted on the full model's states."""
    from common.ml.deferral import DeferralHead

    head = DeferralHead.load(name_or_path)
    if head is not None and layer_num is not None:
        log.warning("%s: cutting layers changes the model its deferral head was fitted on; routing on max "
                    "softmax instead", name_or_path)
        return None
    return head


HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # GPU only; the CLI's choices: config.PRECISIONS


def optimize(model: nn.Module, device: torch.device, *, quantize: bool = False,
             precision: str = "fp32") -> nn.Module:
    """Dynamic int8 quantization of the ``nn.Linear`` layers (CPU), or half precision (GPU).

    Dynamic quantization needs no calibration data: weights are stored in int8
    and activations quantized per batch, which speeds up the matrix products
    that dominate a BERT on CPU. bf16/fp16 halve memory traffic on a GPU; on a
    CPU they are usually slower, hence refused there.
    """
    if precision not in HALF_DTYPES and precision != "fp32":
        raise ModelLoadError(f"precision must be one of fp32, {', '.join(HALF_DTYPES)}, got {precision!r}")
    if quantize:
        if device.type != "cpu":
            raise ModelLoadError("--quantize (dynamic int8) runs on the CPU only; use --precision on a GPU")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    if precision != "fp32":
        if device.type == "cpu":
            raise ModelLoadError(f"--precision {precision} is for GPUs; on a CPU use --quantize")
        return model.to(HALF_DTYPES[precision])
    return model


def load_pretrained(name_or_path: str, **model_kwargs) -> tuple[nn.Module, object]:
    """``from_pretrained`` for the model and tokenizer, failing with one clear line; the model pools as its
    config says (``common.ml.pooling``)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with _loading(name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **model_kwargs)
    return with_pooling(model), tokenizer


def load_config_and_tokenizer(name_or_path: str) -> tuple[object, object]:
    """What an exported model still needs of its checkpoint: the config (labels) and the tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    with _loading(name_or_path):
        return AutoConfig.from_pretrained(name_or_path), AutoTokenizer.from_pretrained(name_or_path)


@contextlib.contextmanager
def _loading(name_or_path: str) -> Iterator[None]:
    missing_directory(name_or_path)
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {first_line(exc)}") from exc


def find_layers(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """Locate the encoder's ``ModuleList`` of transformer layers."""
    base = getattr(model, "base_model", model)
    for path in _LAYER_PATHS:
        *steps, attr = path.split(".")
        parent = base
        for step in steps:
            parent = getattr(parent, step, None)
        layers = getattr(parent, attr, None) if parent is not None else None
        if isinstance(layers, nn.ModuleList):
            return parent, attr, layers
    raise ModelLoadError(f"cannot find the transformer layers of {type(model).__name__}")


def truncate_layers(model: nn.Module, layer_num: int) -> None:
    """Keep the first ``layer_num`` encoder layers, in place, and record it in the config."""
    parent, attr, layers = find_layers(model)
    if not 1 <= layer_num <= len(layers):
        raise ModelLoadError(f"the layer count (--layer-num; --layer_num on eval) must be between 1 and {len(layers)} "
                             f"(the model has {len(layers)} layers), got {layer_num}")
    setattr(parent, attr, nn.ModuleList(list(layers)[:layer_num]))
    for key in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(model.config, key):
            setattr(model.config, key, layer_num)


def read_temperature(name_or_path: str) -> float:
    """The calibration temperature saved next to a local model, or 1.0."""
    path = Path(name_or_path) / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    try:
        value = float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: not a valid calibration file ({exc})") from exc
    if not value > 0:
        raise ModelLoadError(f"{path}: temperature must be positive, got {value}")
    return value


def write_temperature(model_dir: str | Path, temperature: float) -> Path:
    """Save a calibration temperature next to a model directory."""
    path = Path(model_dir) / CALIBRATION_FILE
    path.write_text(json.dumps({"temperature": float(temperature)}) + "\n")
    return path


def _max_length(model: nn.Module, tokenizer: object) -> int:
    limits = [DEFAULT_MAX_LENGTH]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 1_000_000:
        limits.append(tok_max)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions < DEFAULT_MAX_LENGTH:
        limits.append(positions)  # tiny test models; RoBERTa-style offsets sit above 512
    return min(limits)


class ServedModel(Protocol):
    """What a worker's settings say about its model (``common.queue.config.WorkerSettings``)."""

    model: str
    device: str
    batch_size: int
    threads: int | None
    quantize: bool
    precision: str
    backend: str


def import_model_code(settings: ServedModel) -> None:
    """Import the code of the worker's model class in the parent process, before it forks.

    transformers imports a model's module on first use, and for a small model
    that costs more than reading its weights (bench/RESULTS.md, section (12),
    "Worker start"). Imported once before the fork, every pool process, and every one
    that replaces a process that died, starts with it. Nothing is built here:
    no weights, no tokenizer, no thread pool a fork would break. An ONNX
    worker with a fresh export never runs the torch model, so it skips this."""
    if settings.backend != "torch":
        return
    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, AutoConfig

    with _loading(settings.model):
        config = AutoConfig.from_pretrained(settings.model)
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]  # the lookup imports the module


def load_for_worker(settings: ServedModel) -> TierModel:
    """A worker process's model, using only the worker's share of the cores.

    Called in each process after the fork: torch's and the Rust tokenizer's
    thread pools are sized on first use, and a pool created before a fork
    does not survive it."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
        os.environ.setdefault("RAYON_NUM_THREADS", str(settings.threads))
        if settings.threads == 1:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return load_tier(settings.model, device=settings.device, batch_size=settings.batch_size,
                     quantize=settings.quantize, precision=settings.precision, backend=settings.backend)
