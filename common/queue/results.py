"""One item's final answer, and the one output format both modes write.

``tango label`` (in-process) and ``tango results`` (cluster) go through the
same record type and the same writers, so their outputs can be diffed line by
line. A failed item is a record too, with ``error`` set and no label.
A writer (``open_sink``) takes records block by block and says how many are
in its output so far (``flush``), because ``tango results --drain`` deletes
from Redis only what is already out.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from json.encoder import encode_basestring
from math import isfinite
from typing import IO, Callable, Iterable, NamedTuple, Protocol, Sequence

from common.labels import gold_names
from common.errors import ConfigError

TEXT_FORMATS = ("jsonl", "csv")
OUTPUT_FORMATS = (*TEXT_FORMATS, "parquet")
BINARY_FORMATS = ("parquet",)
ROW_GROUP = 10_000  # parquet rows per row group: what the writer holds before it writes them
FIELDS = ("id", "label", "score", "tier", "model")
# one encoder for every record: ``json.dumps`` with options builds a new one per call
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# a message's JSON may carry lone surrogates ("\udc80"): valid JSON, a valid Python str, and no UTF-8 at
# all, so Redis (and any UTF-8 file) cannot take them raw; a record holding one is written with escapes
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(line: str, value: Callable[[], dict]) -> str:
    """``line`` (what ``value()`` gives, as ``_ENCODER`` writes it), or that with ASCII escapes where
    ``line`` holds a lone surrogate, so that every str a message can carry encodes as UTF-8."""
    return line if line.isascii() or _SURROGATE.search(line) is None else _ASCII_ENCODER.encode(value())


def _string(value: str | None) -> str:
    """A JSON string as ``_ENCODER`` writes it (non-ASCII kept), or null."""
    return "null" if value is None else encode_basestring(value)


class ResultRecord(NamedTuple):
    """The decision for one item: which label, how sure, which tier and model decided.

    A tuple, not a dataclass, for the same reason as ``WorkItem``: a worker builds one per item."""

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
        """The record as one compact JSON object, always valid UTF-8 (see ``_storable``). An answer (every
        item but the failed ones) is spelled out directly, which cost a third of building a dict and
        encoding it; the bytes are the same."""
        score = self.score
        if self.error is not None or type(score) is not float or not isfinite(score) or type(self.tier) is not int:
            line = _ENCODER.encode(self.to_dict())
        else:
            line = (f'{{"id":{_string(self.id)},"label":{_string(self.label)},"score":{score!r},'
                    f'"tier":{self.tier},"model":{_string(self.model)}}}')
        return _storable(line, self.to_dict)

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
        value = {"tier1": self.tier1, "tier2": self.tier2}
        return _storable(_ENCODER.encode(value), lambda: value)


def gold_matches(gold: str, label: str, labels: Sequence[str]) -> bool:
    """True when a gold label names ``label``, by name (any case) or by its index (GLUE's 0/1)."""
    return gold_names(gold, list(labels)) == label


class RecordSink(Protocol):
    """Where an export writes records, in the order given."""

    def write(self, records: Iterable[ResultRecord]) -> int:
        """Take records; returns how many."""

    def flush(self) -> int:
        """Hand what the format allows to the output; returns how many records are in it so far."""

    def sync(self) -> None:
        """Make the flushed output durable (fsync), where the output is a file."""

    def close(self) -> int:
        """Write everything (a format's trailer too) and sync; returns how many records were written.
        The output stream itself stays open: whoever opened it closes it."""


class _StreamSink:
    """What every sink does with its stream: ``count`` records are in it once flushed."""

    out: IO
    count: int

    def flush(self) -> int:
        self.out.flush()
        return self.count

    def sync(self) -> None:
        _fsync(self.out)


class TextSink(_StreamSink):
    """jsonl (one object per line) or csv (a header, then one row per item) on a text stream."""

    def __init__(self, out: IO[str], fmt: str = "jsonl") -> None:
        self.out, self.count = out, 0
        self.csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(FIELDS + ("error",))

    def write(self, records: Iterable[ResultRecord]) -> int:
        before = self.count
        for record in records:
            if self.csv:
                self.csv.writerow(["" if value is None else value for value in _row(record)])
            else:
                self.out.write(record.to_json() + "\n")
            self.count += 1
        return self.count - before

    def close(self) -> int:
        self.flush()
        self.sync()
        return self.count


class ParquetSink(_StreamSink):
    """Parquet on a binary stream, one row group per ``row_group`` records as they come; the
    footer, which readers need, is written by ``close``."""

    def __init__(self, out: IO[bytes], row_group: int = ROW_GROUP) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.out, self.row_group = pa, out, row_group
        self.schema = pa.schema([("id", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                                 ("tier", pa.int8()), ("model", pa.string()), ("error", pa.string())])
        self.writer = pq.ParquetWriter(out, self.schema)
        self.pending: list[ResultRecord] = []
        self.count = 0  # records in written row groups

    def write(self, records: Iterable[ResultRecord]) -> int:
        taken = list(records)
        self.pending.extend(taken)
        while len(self.pending) >= self.row_group:
            self._write_group(self.row_group)
        return len(taken)

    def close(self) -> int:
        if self.pending:
            self._write_group(len(self.pending))
        self.writer.close()
        self.flush()
        self.sync()
        return self.count

    def _write_group(self, size: int) -> None:
        group, self.pending = self.pending[:size], self.pending[size:]
        columns = list(zip(*(_row(record) for record in group)))
        self.writer.write_table(self.pa.Table.from_arrays(
            [self.pa.array(column, type=field.type) for column, field in zip(columns, self.schema)],
            schema=self.schema))
        self.count += size


def open_sink(out: IO, fmt: str) -> TextSink | ParquetSink:
    """The writer of ``fmt`` on ``out`` (a binary stream for parquet, text for the others)."""
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}: use {', '.join(OUTPUT_FORMATS)}")
    return ParquetSink(out) if fmt == "parquet" else TextSink(out, fmt)


def write_records(records: Iterable[ResultRecord], out: IO, fmt: str = "jsonl") -> int:
    """Stream records to ``out`` (one line each for the text formats); returns how many were written."""
    sink = open_sink(out, fmt)
    sink.write(records)
    return sink.close()


def _row(record: ResultRecord) -> tuple:
    return record.id, record.label, record.score, record.tier, record.model, record.error


def _fsync(out: IO) -> None:
    """fsync the file under ``out``; a pipe or an in-memory stream has none, and nothing to sync."""
    try:
        os.fsync(out.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
