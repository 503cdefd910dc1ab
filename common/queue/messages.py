"""The one payload that travels on both queues: a chunk of items of one job.

Only JSON crosses the queue. A chunk is encoded to plain dicts and lists here
and checked field by field on the way in, so a malformed or hostile message
fails with a ``MessageError`` naming the field instead of reaching a model or
another job's keys. Fields added later (the audit rate, an item's audit label)
are optional and left out when unset, so messages of either age decode alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from common.queue.config import MAX_CHUNK_SIZE
from common.errors import MessageError
from common.queue.keys import validate_job_id

VERSION = 1
TASK_TIER1 = "tango.tier1.classify"
TASK_TIER2 = "tango.tier2.classify"
QUEUE_TIER1 = "tier1"
QUEUE_TIER2 = "tier2"
TASKS = {1: TASK_TIER1, 2: TASK_TIER2}
_PART = re.compile(r"^[01]{1,64}$")


@dataclass(frozen=True)
class WorkItem:
    """One item on the queue: its position in the input (``index``) keys its result."""

    index: int
    id: str
    text: str
    text_pair: str | None = None
    gold: str | None = None
    audit: str | None = None  # tier 1's label, on an item it answered and sends to tier 2 only to be checked

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"i": self.index, "id": self.id, "text": self.text}
        if self.text_pair is not None:
            out["text_pair"] = self.text_pair
        if self.gold is not None:
            out["gold"] = self.gold
        if self.audit is not None:
            out["audit"] = self.audit
        return out

    @classmethod
    def decode(cls, raw: Any, where: Callable[[], str]) -> "WorkItem":
        """One checked item; ``where`` names it in an error and is called only then, since
        formatting the place for every valid item cost a fifth of decoding a chunk."""
        if not isinstance(raw, dict):
            raise MessageError(f"{where()}: an item must be an object, got {type(raw).__name__}")
        index = raw.get("i")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MessageError(f"{where()}: 'i' must be a non-negative integer, got {index!r}")
        return cls(index=index, id=_string(raw, "id", where), text=_string(raw, "text", where),
                   text_pair=_string(raw, "text_pair", where, optional=True),
                   gold=_string(raw, "gold", where, optional=True),
                   audit=_string(raw, "audit", where, optional=True))


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

    @property
    def has_pairs(self) -> bool:
        return any(item.text_pair is not None for item in self.items)

    @property
    def is_audit(self) -> bool:
        """Whether the chunk holds audit items (a chunk never mixes them with items to answer)."""
        return bool(self.items) and self.items[0].audit is not None

    @property
    def name(self) -> str:
        """The chunk's name in logs and in the attempt count: ``12``, ``12a`` for its audit items (a
        task of its own, so its own count), or ``12/01`` for a part."""
        base = f"{self.chunk}a" if self.is_audit else str(self.chunk)
        return f"{base}/{self.part}" if self.part else base

    def encode(self) -> dict[str, Any]:
        out = {"v": VERSION, "job": self.job, "chunk": self.chunk, "tier": self.tier,
               "threshold": self.threshold, "labels": list(self.labels),
               "items": [item.encode() for item in self.items]}
        if self.part:
            out["part"] = self.part
        if self.audit:
            out["audit"] = self.audit
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
        if raw.get("v") != VERSION:
            raise MessageError(f"unsupported message version {raw.get('v')!r} (expected {VERSION})")
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
        items = _items(raw.get("items"), job, chunk)
        if tier == 1 and items[0].audit is not None:
            raise MessageError(f"job {job!r} chunk {chunk}: audit items go to tier 2 only")
        return cls(job=job, chunk=chunk, tier=tier, threshold=_unit(raw, "threshold"),
                   labels=_labels(raw.get("labels"), tier), items=items, part=part, audit=_unit(raw, "audit", default=0.0))


def _items(raw: Any, job: str, chunk: int) -> tuple[WorkItem, ...]:
    if not isinstance(raw, list) or not raw:
        raise MessageError("'items' must be a non-empty list")
    if len(raw) > MAX_CHUNK_SIZE:
        raise MessageError(f"a chunk holds at most {MAX_CHUNK_SIZE} items, got {len(raw)}")
    items = tuple(WorkItem.decode(entry, lambda n=n: f"job {job!r} chunk {chunk} item {n}")
                  for n, entry in enumerate(raw))
    if len({item.index for item in items}) != len(items):
        raise MessageError(f"job {job!r} chunk {chunk}: repeated item indices")
    if len({item.audit is None for item in items}) > 1:
        raise MessageError(f"job {job!r} chunk {chunk}: audit items mixed with items to answer")
    return items


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
