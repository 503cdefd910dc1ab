"""Match the two tiers' label sets so that tier 1 and tier 2 answer in one vocabulary.

Hub checkpoints often name their classes ``LABEL_0``, ``LABEL_1`` (the seed's own
SST-2 pair does), so generic names are matched by position; meaningful names
are matched by name, whatever their order.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ConfigError, LabelMismatchError, ModelLoadError, first_line

log = logging.getLogger(__name__)

_GENERIC = re.compile(r"^label_?\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class LabelAlignment:
    """Canonical label names and, per tier, the canonical id of each model output."""

    labels: list[str]
    small_to_canonical: np.ndarray
    big_to_canonical: np.ndarray
    by_index: bool = False

    def label_id(self, name: str) -> int | None:
        """Canonical id of a label name (case-insensitive), or None."""
        wanted = name.strip().casefold()
        for i, label in enumerate(self.labels):
            if label.casefold() == wanted:
                return i
        return None


def is_generic(labels: list[str]) -> bool:
    """True when every name is a placeholder such as ``LABEL_0``."""
    return all(_GENERIC.match(name) for name in labels)


def parse_label_map(spec: str | None) -> dict[str, str]:
    """Parse ``FROM=TO,FROM=TO`` (e.g. ``LABEL_0=negative,LABEL_1=positive``)."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        source, sep, target = part.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigError(f"--label-map entry {part!r} is not of the form FROM=TO")
        mapping[source.strip()] = target.strip()
    return mapping


def align_labels(small: list[str], big: list[str], label_map: dict[str, str] | None = None) -> LabelAlignment:
    """Match label sets by name, or by index where one side is generic; fail otherwise."""
    label_map = label_map or {}
    small = [label_map.get(name, name) for name in small]
    big = [label_map.get(name, name) for name in big]
    if len(small) != len(big):
        raise LabelMismatchError(f"the tiers have different label counts: small {small} vs big {big}")
    if is_generic(small) or is_generic(big):
        return _by_index(small, big)
    return _by_name(small, big)


def _by_index(small: list[str], big: list[str]) -> LabelAlignment:
    canonical = big if is_generic(small) else small
    if small != big:
        log.warning("matching tier labels by index (generic names on one side): %s",
                    ", ".join(f"{s}={b}" for s, b in zip(small, big)) + "; use --label-map to state it")
    ids = np.arange(len(canonical))
    return LabelAlignment(list(canonical), ids, ids.copy(), by_index=small != big)


def _by_name(small: list[str], big: list[str]) -> LabelAlignment:
    folded = [name.casefold() for name in small]
    try:
        big_ids = [folded.index(name.casefold()) for name in big]
    except ValueError:
        raise LabelMismatchError(f"the tiers' labels differ: small {small} vs big {big}; "
                                 "use --label-map FROM=TO,... to map them") from None
    if len(set(big_ids)) != len(big_ids):
        raise LabelMismatchError(f"label names repeat: small {small} vs big {big}")
    return LabelAlignment(list(small), np.arange(len(small)), np.asarray(big_ids))


def model_labels(name_or_path: str) -> list[str]:
    """A model's label names from its ``config.json`` alone (a local directory, else the hub's copy):
    no weights and no torch, so the CLI and a worker's pre-fork check learn a label set cheaply."""
    config = model_config(name_or_path)
    try:
        id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
        count = int(config.get("num_labels") or len(id2label) or 2)
    except Exception as exc:  # noqa: BLE001 - malformed fields: "cannot load" as well
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {first_line(exc)}") from None
    return [str(id2label.get(i, f"LABEL_{i}")) for i in range(count)]


def model_config(name_or_path: str) -> dict:
    """A model's ``config.json`` as a dict (a local directory, else the hub's copy), without weights."""
    local = Path(name_or_path) / "config.json"
    missing_directory(name_or_path)
    try:
        if not local.is_file():
            from huggingface_hub import hf_hub_download

            local = Path(hf_hub_download(name_or_path, "config.json"))
        config = json.loads(local.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("config.json is not an object")
    except Exception as exc:  # noqa: BLE001 - a missing repo, no network, bad JSON: all "cannot load"
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {first_line(exc)}") from None
    return config


def missing_directory(name_or_path: str) -> None:
    """Refuse, in one line, a model argument that can only be a directory and does not exist: one that
    starts with ``/``, ``.`` or ``~``, or holds a backslash or more than one ``/``, is never a hub id
    (``org/name``), and the hub client would only complain about the id's form."""
    pathlike = name_or_path.startswith(("/", ".", "~")) or "\\" in name_or_path or name_or_path.count("/") > 1
    if pathlike and not Path(name_or_path).expanduser().exists():
        raise ModelLoadError(f"model directory {name_or_path} does not exist")


def gold_names(gold: str, labels: list[str] | tuple[str, ...]) -> str | None:
    """The label a gold value names, by name (any case) or by its index (GLUE's 0/1); None if none."""
    wanted = gold.strip()
    for name in labels:
        if wanted.casefold() == name.casefold():
            return name
    if wanted.isdigit() and int(wanted) < len(labels):
        return labels[int(wanted)]
    return None
