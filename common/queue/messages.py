"""The one payload that travels on both queues: a chunk of items of one job.

Only JSON crosses the queue. A chunk travels as columns (the items' indices,
ids, texts, and where any item has one, pairs, gold labels and audit labels),
not as one object per item: a column of a thousand strings costs a fraction of
a thousand small objects to encode, to decode, and to carry through Redis and
Celery's pool. It is checked column by column on the way in, so a malformed or
hostile message fails with a ``MessageError`` naming the field and item instead
of reaching a model or another job's keys. Version 1 messages (one object per
item) are still read, so tasks queued before an upgrade are answered; upgrade
workers before submitters. Optional fields are left out when unset.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any, Callable, Iterable, NamedTuple

from common.queue.config import MAX_CHUNK_SIZE
from common.errors import MessageError
from common.queue.keys import validate_job_id

VERSION = 2  # columns; version 1 (an object per item) is decoded too
TASK_TIER1 = "tango.tier1.classify"
TASK_TIER2 = "tango.tier2.classify"
QUEUE_TIER1 = "tier1"
QUEUE_TIER2 = "tier2"
TASKS = {1: TASK_TIER1, 2: TASK_TIER2}
_PART = re.compile(r"^[01]{1,64}$")


class WorkItem(NamedTuple):
    """One item on the queue: its position in the input (``index``) keys its result.

    A tuple, not a dataclass: a chunk holds a thousand of them, and building a
    frozen dataclass cost four times as much."""

    index: int
    id: str
    text: str
    text_pair: str | None = None
    gold: str | None = None
    audit: str | None = None  # tier 1's label, on an item it answered and sends to tier 2 only to be checked
    calib: str | None = None  # a calibration sample item's tier-1 answer, "confidence TAB label", for tier 2

    @classmethod
    def decode(cls, raw: Any, where: Callable[[], str]) -> "WorkItem":
        """One checked item of a version 1 message; ``where`` names it in an error and is called only
        then, since formatting the place for every valid item cost a fifth of decoding a chunk."""
        if not isinstance(raw, dict):
            raise MessageError(f"{where()}: an item must be an object, got {type(raw).__name__}")
        index = raw.get("i")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MessageError(f"{where()}: 'i' must be a non-negative integer, got {index!r}")
        return cls(index, _string(raw, "id", where), _string(raw, "text", where),
                   _string(raw, "text_pair", where, optional=True), _string(raw, "gold", where, optional=True),
                   _string(raw, "audit", where, optional=True))

    def tier1_answer(self) -> tuple[float, str]:
        """A calibration item's tier-1 (confidence, label), as ``calibration_answer`` wrote it."""
        confidence, label = (self.calib or "").split("\t", 1)
        return float(confidence), label


def calibration_answer(confidence: float, label: str) -> str:
    """Tier 1's answer on a calibration item, carried to tier 2 beside it (repr: the float comes back exact)."""
    return f"{float(confidence)!r}\t{label}"


OPTIONAL_COLUMNS = ("pairs", "gold", "audited", "calib")  # WorkItem's last four fields, in their order


@dataclass(frozen=True)
class Chunk:
    """A job's items for one task, plus what a worker needs to decide them alone."""

    job: str
    chunk: int
    tier: int
    threshold: float
    labels: tuple[str, ...]
    items: tuple[WorkItem, ...]
    part: str = ""  # which half of a split chunk, as a path of 0s and 1s ("" for a whole chunk)
    audit: float = 0.0  # the job's audit rate: the share of tier 1's answers that tier 2 checks
    calibrate: bool = False  # a calibration sample chunk: both tiers answer every item, tier 2's answer stands

    @property
    def is_audit(self) -> bool:
        """Whether the chunk holds audit items (a chunk never mixes them with items to answer)."""
        return bool(self.items) and self.items[0].audit is not None

    @property
    def name(self) -> str:
        """The chunk's name in logs and in the attempt count: ``12``, ``12a`` for its audit items (a
        task of its own, so its own count), or ``12/01`` for a part."""
        base = f"{self.chunk}a" if self.is_audit else f"{self.chunk}c" if self.calibrate else str(self.chunk)
        return f"{base}/{self.part}" if self.part else base

    def encode(self) -> dict[str, Any]:
        indexes, ids, texts, *optional = map(list, zip(*self.items)) if self.items else ([],) * len(WorkItem._fields)
        out = {"v": VERSION, "job": self.job, "chunk": self.chunk, "tier": self.tier,
               "threshold": self.threshold, "labels": list(self.labels), "i": indexes, "ids": ids, "texts": texts}
        for key, column in zip(OPTIONAL_COLUMNS, optional):
            if column.count(None) != len(column):
                out[key] = column
        if self.part:
            out["part"] = self.part
        if self.audit:
            out["audit"] = self.audit
        if self.calibrate:
            out["calibrate"] = True
        return out

    def describe(self) -> str:
        """One line for logs and monitors, never the texts themselves."""
        return f"[job {self.job!r} chunk {self.name} tier {self.tier}: {len(self.items)} items]"

    def forward(self, items: Iterable[WorkItem]) -> "Chunk":
        """The same chunk, cut down to the items tier 1 sends on to tier 2."""
        return replace(self, tier=2, items=tuple(items))

    def halves(self) -> tuple["Chunk", "Chunk"]:
        """The chunk split in two, each half its own task with its own attempt count."""
        middle = len(self.items) // 2
        return (replace(self, items=self.items[:middle], part=self.part + "0"),
                replace(self, items=self.items[middle:], part=self.part + "1"))

    @classmethod
    def decode(cls, raw: Any) -> "Chunk":
        if not isinstance(raw, dict):
            raise MessageError(f"a chunk must be a JSON object, got {type(raw).__name__}")
        version = raw.get("v")
        if version not in (1, VERSION) or isinstance(version, bool):
            raise MessageError(f"unsupported message version {version!r} (expected 1 or {VERSION})")
        job = raw.get("job")
        if not isinstance(job, str):
            raise MessageError("'job' must be a string")
        validate_job_id(job, error=MessageError)
        chunk, tier = raw.get("chunk"), raw.get("tier")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 0:
            raise MessageError(f"'chunk' must be a non-negative integer, got {chunk!r}")
        if tier not in (1, 2) or isinstance(tier, bool):
            raise MessageError(f"'tier' must be 1 or 2, got {tier!r}")
        part = raw.get("part", "")
        if part != "" and not (isinstance(part, str) and _PART.match(part)):
            raise MessageError(f"'part' must be a string of up to 64 0s and 1s, got {part!r}")
        items = _columns(raw, job, chunk) if version == VERSION else _items(raw.get("items"), job, chunk)
        if tier == 1 and (items[0].audit is not None or any(item.calib is not None for item in items)):
            raise MessageError(f"job {job!r} chunk {chunk}: audit and calibration answers go to tier 2 only")
        calibrate = raw.get("calibrate", False)
        if not isinstance(calibrate, bool):
            raise MessageError(f"'calibrate' must be true or false, got {calibrate!r}")
        _check_calibration(items, calibrate and tier == 2, job, chunk)
        return cls(job=job, chunk=chunk, tier=tier, threshold=_unit(raw, "threshold"),
                   labels=_labels(raw.get("labels"), tier), items=items, part=part, audit=_unit(raw, "audit", default=0.0),
                   calibrate=calibrate)


def _items(raw: Any, job: str, chunk: int) -> tuple[WorkItem, ...]:
    """A version 1 message's items: one object each."""
    if not isinstance(raw, list) or not raw:
        raise MessageError("'items' must be a non-empty list")
    _check_size(len(raw))
    items = tuple(WorkItem.decode(entry, lambda n=n: f"job {job!r} chunk {chunk} item {n}")
                  for n, entry in enumerate(raw))
    if len({item.audit is None for item in items}) > 1:
        raise MessageError(f"job {job!r} chunk {chunk}: audit items mixed with items to answer")
    _check_unique([item.index for item in items], job, chunk)
    return items


def _columns(raw: dict, job: str, chunk: int) -> tuple[WorkItem, ...]:
    """A version 2 message's items, each column checked whole (a type check per value in C, not a
    Python call per item); the first bad value is named by its item."""
    indexes = raw.get("i")
    if not isinstance(indexes, list) or not indexes:
        raise MessageError("'i' must be a non-empty list")
    _check_size(len(indexes))
    if not set(map(type, indexes)) == {int} or min(indexes) < 0:
        bad = next(n for n, value in enumerate(indexes) if type(value) is not int or value < 0)
        raise MessageError(f"job {job!r} chunk {chunk} item {bad}: 'i' must hold non-negative integers, "
                           f"got {indexes[bad]!r}")
    columns = [_column(raw, key, len(indexes), job, chunk) for key in ("ids", "texts")]
    for key in OPTIONAL_COLUMNS:
        columns.append(_column(raw, key, len(indexes), job, chunk, optional=True) if key in raw
                       else repeat(None, len(indexes)))
    if "audited" in raw and None in raw["audited"]:
        raise MessageError(f"job {job!r} chunk {chunk}: audit items mixed with items to answer")
    _check_unique(indexes, job, chunk)
    return tuple(map(WorkItem, indexes, *columns))


def _column(raw: dict, key: str, size: int, job: str, chunk: int, optional: bool = False) -> list:
    """One column of strings (or of strings and nulls, ``optional``), one value per item."""
    values = raw.get(key)
    if not isinstance(values, list) or len(values) != size:
        raise MessageError(f"job {job!r} chunk {chunk}: {key!r} must be a list of {size} values, one per item")
    allowed = {str, type(None)} if optional else {str}
    if not set(map(type, values)) <= allowed:
        bad = next(n for n, value in enumerate(values) if type(value) not in allowed)
        raise MessageError(f"job {job!r} chunk {chunk} item {bad}: {key!r} must hold strings, "
                           f"got {type(values[bad]).__name__}")
    return values


def _check_calibration(items: tuple[WorkItem, ...], needed: bool, job: str, chunk: int) -> None:
    """A tier-2 calibration chunk carries every item's tier-1 answer, a confidence in [0, 1] and a label;
    no other chunk carries any."""
    for n, item in enumerate(items):
        if (item.calib is not None) != needed:
            raise MessageError(f"job {job!r} chunk {chunk} item {n}: tier-1 answers travel on every item of a "
                               "tier-2 calibration chunk and on no other")
        if needed:
            try:
                confidence, label = item.tier1_answer()
            except ValueError:
                confidence, label = -1.0, ""
            if not 0.0 <= confidence <= 1.0 or not label:
                raise MessageError(f"job {job!r} chunk {chunk} item {n}: 'calib' must be a confidence in [0, 1], "
                                   f"a tab and a label, got {item.calib!r}")


def _check_size(size: int) -> None:
    if size > MAX_CHUNK_SIZE:
        raise MessageError(f"a chunk holds at most {MAX_CHUNK_SIZE} items, got {size}")


def _check_unique(indexes: list[int], job: str, chunk: int) -> None:
    if len(set(indexes)) != len(indexes):
        raise MessageError(f"job {job!r} chunk {chunk}: repeated item indices")


def _unit(raw: dict, key: str, default: float | None = None) -> float:
    """A number in [0, 1]; an optional field (``default`` set) may be absent, as in older messages."""
    value = raw.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise MessageError(f"{key!r} must be a number in [0, 1], got {value!r}")
    return float(value)


def _labels(raw: Any, tier: int) -> tuple[str, ...]:
    """At least two names; or none on tier 1, for a job submitted before any worker fixed its labels."""
    if tier == 1 and raw == []:
        return ()
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(x, str) and x for x in raw):
        raise MessageError(f"'labels' must be a list of at least 2 non-empty strings, got {raw!r}")
    return tuple(raw)


def _string(raw: dict, key: str, where: Callable[[], str], optional: bool = False) -> str | None:
    value = raw.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise MessageError(f"{where()}: {key!r} must be a string, got {type(value).__name__}")
    return value
