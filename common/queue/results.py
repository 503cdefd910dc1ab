"""One item's final answer, and the one output format both modes write.

``tango label`` (in-process) and ``tango results`` (cluster) go through the
same record type and the same writers, so their outputs can be diffed line by
line. A failed item is a record too, with ``error`` set and no label.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import IO, Iterable, Sequence

from common.labels import gold_names
from common.errors import ConfigError

OUTPUT_FORMATS = ("jsonl", "csv")
FIELDS = ("id", "label", "score", "tier", "model")
# one encoder for every record: ``json.dumps`` with options builds a new one per call
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ResultRecord:
    """The decision for one item: which label, how sure, which tier and model decided."""

    id: str
    label: str | None
    score: float | None
    tier: int | None
    model: str | None
    error: str | None = None

    def to_dict(self) -> dict:
        out = {"id": self.id, "label": self.label, "score": self.score, "tier": self.tier, "model": self.model}
        if self.error is not None:
            out["error"] = self.error
        return out

    def to_json(self) -> str:
        return _ENCODER.encode(self.to_dict())

    @classmethod
    def from_json(cls, raw: str | bytes) -> "ResultRecord":
        data = json.loads(raw)
        return cls(id=data["id"], label=data.get("label"), score=data.get("score"), tier=data.get("tier"),
                   model=data.get("model"), error=data.get("error"))

    @classmethod
    def failed(cls, item_id: str, tier: int, reason: str) -> "ResultRecord":
        return cls(id=item_id, label=None, score=None, tier=tier, model=None, error=reason)


@dataclass(frozen=True)
class AuditOutcome:
    """Tier 2's check of an item tier 1 answered: both labels, so a disagreement can be looked at later."""

    index: int
    tier1: str
    tier2: str

    @property
    def agrees(self) -> bool:
        return self.tier1 == self.tier2

    def to_json(self) -> str:
        return _ENCODER.encode({"tier1": self.tier1, "tier2": self.tier2})


def gold_matches(gold: str, label: str, labels: Sequence[str]) -> bool:
    """True when a gold label names ``label``, by name (any case) or by its index (GLUE's 0/1)."""
    return gold_names(gold, list(labels)) == label


def write_records(records: Iterable[ResultRecord], out: IO[str], fmt: str = "jsonl") -> int:
    """Stream records to ``out`` one line each; returns how many were written."""
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}: use {' or '.join(OUTPUT_FORMATS)}")
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(record.to_json() + "\n")
            count += 1
        return count
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS + ("error",))
    for record in records:
        writer.writerow(["" if value is None else value for value in
                         (record.id, record.label, record.score, record.tier, record.model, record.error)])
        count += 1
    return count
