"""Temperature scaling: one scalar that makes a model's confidences mean what they say.

A cascade threshold of 0.9 should send the same share of mistakes to tier 2
whichever small model is plugged in; fine-tuned transformers are usually
over-confident, so raw thresholds do not transfer. Guo et al. (2017): divide
the logits by T, fitted to minimise the negative log-likelihood on held-out data.

The calibration file also keeps a fingerprint of the items it was fitted on
(sorted 64-bit hashes of the texts), so ``tango sweep`` can tell when it is
choosing a threshold on those same items: its figures are then optimistic.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.errors import ConfigError, DataError

log = logging.getLogger(__name__)

T_BOUNDS = (0.05, 20.0)
FINGERPRINT_KEY = "fitted_on"
_SEPARATOR = "\x1f"  # unit separator: ("ab", "c") and ("a", "bc") must hash apart


@dataclass(frozen=True)
class CalibrationResult:
    """The fitted temperature with before/after quality, for the report."""

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    examples: int

    def as_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels under softmax(logits / T)."""
    z = logits.astype(np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width confidence bins: how far confidence is from accuracy, on average."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> CalibrationResult:
    """The temperature minimising held-out NLL (a 1-D bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    from common.cascade import softmax

    labels = np.asarray(labels, dtype=np.int64)
    _check(logits, labels)
    result = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                             bounds=tuple(np.log(T_BOUNDS)), method="bounded", options={"xatol": 1e-4})
    temperature = float(np.exp(result.x))
    return CalibrationResult(temperature, nll(logits, labels), nll(logits, labels, temperature),
                             expected_calibration_error(softmax(logits), labels),
                             expected_calibration_error(softmax(logits, temperature), labels), len(labels))


def _check(logits: np.ndarray, labels: np.ndarray) -> None:
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ConfigError(f"logits of shape {logits.shape} do not match {len(labels)} labels")
    if len(labels) < 2:
        raise DataError("calibration needs at least two labelled held-out examples")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise DataError(f"calibration labels must lie in [0, {logits.shape[1] - 1}]")


def calibrate_model(model_dir: str | Path, texts: Sequence[str], pairs: Sequence[str] | None,
                    label_ids: Sequence[int], batch_size: int = 64, device: str = "cpu",
                    write: bool = True) -> CalibrationResult:
    """Fit a temperature for a saved model on held-out items and store it beside the model."""
    from common.ml.models import load_tier, write_temperature

    if not (Path(model_dir) / "config.json").is_file():
        raise ConfigError(f"--model {model_dir}: calibration needs a local model directory")
    tier = load_tier(str(model_dir), device=device, batch_size=batch_size)
    result = fit_temperature(tier.logits(texts, pairs, progress="calibration logits"), label_ids)
    if write:
        path = write_temperature(model_dir, result.temperature)
        _add_fingerprint(path, fingerprint(texts, pairs))
        log.info("wrote temperature %.4f to %s", result.temperature, model_dir)
    return result


def fingerprint(texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the items: compact, and exact up to a 2^-64 collision per pair."""
    return np.unique(_hashes(texts, pairs))


def _hashes(texts: Sequence[str], pairs: Sequence[str] | None) -> np.ndarray:
    keys = texts if pairs is None else [f"{t}{_SEPARATOR}{p}" for t, p in zip(texts, pairs)]
    return np.asarray([int.from_bytes(hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest(), "little")
                       for k in keys], dtype=np.uint64)


def _add_fingerprint(path: Path, hashes: np.ndarray) -> None:
    """Added beside the temperature, so the file stays what ``read_temperature`` expects."""
    data = json.loads(path.read_text())
    data[FINGERPRINT_KEY] = {"hash": "blake2b-64", "items": int(len(hashes)),
                             "hashes": base64.b64encode(hashes.astype("<u8").tobytes()).decode("ascii")}
    path.write_text(json.dumps(data) + "\n")


def read_fingerprint(model_dir: str | Path) -> np.ndarray | None:
    """The calibration's item hashes; None for a hub model, no calibration, or a file from before fingerprints."""
    from common.ml.models import CALIBRATION_FILE

    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text()).get(FINGERPRINT_KEY)
        if entry is None:
            return None
        return np.frombuffer(base64.b64decode(entry["hashes"]), dtype="<u8").astype(np.uint64)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a valid calibration fingerprint ({exc})") from exc


def calibration_overlap(model_dir: str | Path, texts: Sequence[str], pairs: Sequence[str] | None = None) -> int | None:
    """How many of these items the model's calibration was fitted on (None: unknown, see ``read_fingerprint``)."""
    seen = read_fingerprint(model_dir)
    if seen is None:
        return None
    return int(np.isin(_hashes(texts, pairs), seen).sum())
