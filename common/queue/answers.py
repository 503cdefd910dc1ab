"""Results and their export: idempotent writes, ordered reads, the answered bitmap and the drain.

Delivery is at-least-once (late acks, redelivery after a crash), so a result is written by one
Lua script that stores an item only if it has no answer yet and only then bumps the counters, and
marks the job finished exactly once when every item is answered. Running a chunk twice therefore
changes nothing. Audit outcomes go through a second script that keeps them beside the results
(never instead of one), counts each item once, and never moves the job's state.
Results are keyed by the item's input position, which lets ``iter_results`` stream a job back in
input order, one block of keys at a time. Which items are answered is also kept as a bitmap (1 bit
per item), so ``drain`` may delete results once they are written out and a redelivered chunk still
stores nothing twice, and ``resume`` still sends nothing drained again. Draining moves a
watermark: the drained items are always items 0..drained-1.
"""
from __future__ import annotations

import time
from collections.abc import Set
from typing import TYPE_CHECKING, Iterator, Sequence

import redis

from common.errors import JobError, JobGoneError
from common.queue.jobs import JobStatus, gone
from common.queue.keys import answered_key, audited_key, audits_key, failures_key, job_keys, meta_key, results_key
from common.queue.results import AuditOutcome, ResultRecord

if TYPE_CHECKING:
    from redis.commands.core import Script

READ_BLOCK = 1000
FAILED = "f"


class ResultTable:
    """The results half of ``ResultStore`` (which supplies ``client``, ``status`` and the scripts)."""

    client: redis.Redis
    _write: "Script"
    _audit: "Script"
    _frontier: "Script"
    _drain: "Script"

    def write(self, job: str, entries: Sequence[tuple[int, ResultRecord, bool | None]]) -> int:
        """Store ``(index, record, correct)`` entries in one round trip; returns how many were new.

        A record with ``error`` set is stored as a failure. ``correct`` is None
        for items without a gold label. Raises ``JobError`` when the job's
        records are gone (a Redis that restarted without persistence).
        """
        if not entries:
            return 0
        packed = "\n".join(entry_line(index, record, correct) for index, record, correct in entries)
        added = self._write(keys=job_keys(job)[:5], args=[repr(time.time()), packed])
        return self._checked(job, added, "a write")

    def audit(self, job: str, outcomes: Sequence[AuditOutcome]) -> int:
        """Store tier 2's checks of tier 1's answers in one round trip; returns how many were new.

        An item's result is never touched, nor the job's done/tier counts or
        state: an audit costs tier-2 time but answers nothing.
        """
        if not outcomes:
            return 0
        packed = "\n".join(f"{o.index}\t{int(o.agrees)}\t{o.to_json()}" for o in outcomes)
        added = self._audit(keys=[meta_key(job), audits_key(job), audited_key(job)], args=[packed])
        return self._checked(job, added, "an audit")

    def _checked(self, job: str, added: int, what: str) -> int:
        """A write script's answer, or its refusal as an error: a gone job, or a foreign item index
        (a malformed or forged chunk: nothing of it is stored, so it answers nothing)."""
        if added == -2:
            total = int(self.client.hget(meta_key(job), "total") or 0)
            raise JobError(f"job {job!r}: refused {what} naming an item outside the job's items "
                           f"0-{total - 1}; nothing of it was stored")
        if added < 0:
            raise JobGoneError(gone(job))
        return int(added)

    def answered(self, job: str) -> "Answered":
        """The indices of every item with a result or a recorded failure, drained ones included
        (read from the bitmap: total/8 bytes, whatever the results hold)."""
        bits = self.client.execute_command("GET", answered_key(job), NEVER_DECODE=True)
        return Answered(bits or b"")

    def frontier(self, job: str, start: int) -> int:
        """The end of the run of answered items from ``start`` (the job's total when all are)."""
        stop = self._frontier(keys=[meta_key(job), answered_key(job)], args=[start])
        if stop < 0:
            raise JobGoneError(gone(job))
        return int(stop)

    def drain(self, job: str, stop: int) -> int:
        """Delete the stored records of items below ``stop`` that were not drained yet, once the
        caller has written them out durably; returns the new watermark. Never passes an unanswered
        item, so the drained items stay exactly 0..watermark-1."""
        mark = self._drain(keys=[*job_keys(job)[:4], audits_key(job)], args=[stop])
        if mark < 0:
            raise JobGoneError(gone(job))
        return int(mark)

    def read(self, job: str, start: int, stop: int,
             block: int = READ_BLOCK) -> Iterator[tuple[int, ResultRecord | None]]:
        """``(index, record)`` for items ``start..stop-1`` in order, None where nothing is stored,
        ``block`` keys per round trip."""
        for first in range(start, stop, block):
            indices = [str(i) for i in range(first, min(first + block, stop))]
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(results_key(job), indices)
            pipe.hmget(failures_key(job), indices)
            results, failures = pipe.execute()
            for index, result, failure in zip(indices, results, failures):
                raw = result or failure
                yield int(index), None if raw is None else ResultRecord.from_json(raw)

    def iter_results(self, job: str, partial: bool = False, block: int = READ_BLOCK) -> Iterator[ResultRecord]:
        """Every item's record in input order, ``block`` keys per round trip.

        Unless ``partial``, a job that has not finished is refused rather than
        streamed with holes, as is one whose first items were drained, and a
        hole in a finished job is an error. With ``partial`` the drained items
        and the unanswered ones are left out.
        """
        status = self.status(job)
        for index, record in self.read(job, export_start(status, partial), status.total, block):
            if record is not None:
                yield record
            elif not partial:
                raise JobError(f"job {job!r}: item {index} has no result although the job is "
                               f"{status.state}; its records are damaged")


class Answered(Set):
    """A set of item indices read from a job's answered bitmap: a membership test is one bit,
    so ``resume`` of a huge job holds total/8 bytes instead of a Python set of every index.
    Bit i is bit ``7 - i % 8`` of byte ``i // 8``, as Redis numbers them."""

    def __init__(self, bits: bytes) -> None:
        self.bits = bits

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or index < 0 or index >> 3 >= len(self.bits):
            return False
        return bool(self.bits[index >> 3] >> (7 - (index & 7)) & 1)

    def __iter__(self) -> Iterator[int]:
        for number, byte in enumerate(self.bits):
            yield from (number * 8 + bit for bit in range(8) if byte >> (7 - bit) & 1)

    def __len__(self) -> int:
        return int.from_bytes(self.bits, "big").bit_count()

    def count_from(self, start: int) -> int:
        """How many indices at or after ``start`` are in the set (bit i is bit ``width - 1 - i`` of the number)."""
        width = len(self.bits) * 8
        if start >= width:
            return 0
        return (int.from_bytes(self.bits, "big") & ((1 << (width - max(start, 0))) - 1)).bit_count()


def export_start(status: JobStatus, partial: bool, follow: bool = False) -> int:
    """The first item an export of the job writes: 0, or past the drained ones with ``partial``.

    Refuses, in one line, a job that has not finished (unless ``partial`` or
    ``follow``) and a drained one without ``partial``: its first items are only
    in the output that drained them, and a file without them must not pass for
    the whole job.
    """
    if not (partial or follow) and status.state not in ("done", "failed"):
        raise JobError(f"job {status.job!r} is {status.state} ({status.answered} of {status.total} items); "
                       "wait for it or pass --partial")
    if status.drained and not partial:
        raise JobError(f"job {status.job!r}: items 0-{status.drained - 1} ({status.drained} of {status.total}) "
                       "are no longer in Redis: `tango results --drain` wrote them out and deleted them; "
                       f"pass --partial to write the items from {status.drained} on")
    return status.drained


def entry_line(index: int, record: ResultRecord, correct: bool | None) -> str:
    """One item's line for ``lua.WRITE``: one packed argument per chunk, not four per item,
    because redis-py's per-argument packing cost more than the Lua write itself."""
    kind = FAILED if record.error is not None else str(record.tier)
    return f"{index}\t{kind}\t{'' if correct is None else int(correct)}\t{record.to_json()}"
