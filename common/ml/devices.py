"""Turn the device strings users type into ``torch.device`` objects.

The research script took ordinals (``0``, ``1``, ``-1`` for CPU) while
Hugging Face users type ``cuda:1`` or ``mps``; both must work, and a device
that is not present must fail before any model is loaded.
"""
from __future__ import annotations

import torch

from common.errors import ConfigError


def resolve_device(spec: str | int | None) -> torch.device:
    """Parse ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or an ordinal (``-1`` is CPU)."""
    text = "cpu" if spec is None else str(spec).strip().lower()
    if text.lstrip("-").isdigit():
        ordinal = int(text)
        text = "cpu" if ordinal < 0 else f"cuda:{ordinal}"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"unknown device {spec!r}: use cpu, cuda, cuda:N, mps or an ordinal") from exc
    _check_available(device, spec)
    return device


def _check_available(device: torch.device, spec: object) -> None:
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= count:
            raise ConfigError(f"device {spec!r} is not available: this machine has {count} CUDA device(s)")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {spec!r} is not available on this machine")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {spec!r}: use cpu, cuda, cuda:N or mps")
