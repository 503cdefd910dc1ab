"""Write a job's results out in input order, while it runs if asked, and delete what is out.

A result store that keeps every result until the job ends grows with the corpus. ``Exporter.follow``
writes the longest answered prefix of the job (``ResultStore.frontier``), waits, and goes on until
the job ends; with ``drain`` it then deletes from Redis what its sink reports written out, in
blocks and only after syncing the output (``ResultStore.drain``), so Redis holds only the tail not
exported yet. A drain never passes what this export itself has in its output: the first item it
skipped (a partial export, or a cancelled job) bounds it, so an item answered after the export read
past it stays in Redis for a later one. The answered bitmap outlives the deleted results, so
redelivered chunks store nothing again and ``resume`` sends nothing drained. ``Exporter.once`` is
the plain ``tango results``: one pass over a finished job (or what is there, with ``partial``).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from common.errors import JobError
from common.queue.results import RecordSink
from common.queue.answers import READ_BLOCK, export_start
from common.queue.jobs import JobStatus
from common.queue.store import ResultStore

Progress = Callable[[JobStatus, int], None]  # the job's latest status and how many records are written


@dataclass
class Exporter:
    """One export of one job to one sink; ``poll`` reads the job's status (the CLI's rides out a
    Redis restart), ``block`` is both the read size and the drain step."""

    store: ResultStore
    job: str
    sink: RecordSink
    drain: bool = False
    block: int = READ_BLOCK
    poll: Callable[[], JobStatus] | None = None

    def __post_init__(self) -> None:
        self.next = self.start = self.drained = 0
        self.written = 0  # records in the output so far (for parquet: in written row groups)
        self.skipped: int | None = None  # the first item this export left out (it had no record when read)

    def once(self, status: JobStatus, partial: bool = False) -> JobStatus:
        """Every stored item in order: a finished job, or with ``partial`` what is there."""
        self._begin(status, partial)
        with self._closing():
            return self._finish(status, holes=partial)

    def follow(self, status: JobStatus, partial: bool = False, interval: float = 0.5,
               progress: Progress = lambda status, written: None) -> JobStatus:
        """Write the answered prefix as it grows until the job ends, then whatever remains (items a
        cancelled job left unanswered are skipped)."""
        self._begin(status, partial, follow=True)
        with self._closing():
            while not status.is_final:
                self._copy(self.store.frontier(self.job, self.next), holes=False)
                progress(status, self.written)
                time.sleep(interval)
                status = self._status()
            status = self._finish(status, holes=partial or status.state == "cancelled")
        progress(status, self.written)
        return status

    def _begin(self, status: JobStatus, partial: bool, follow: bool = False) -> None:
        self.next = self.start = self.drained = export_start(status, partial, follow)

    @contextlib.contextmanager
    def _closing(self) -> Iterator[None]:
        """On any error, still close the sink: a parquet file needs its footer to be read at all, and
        what ``drain`` deleted from Redis is only there."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self.sink.close()
            raise

    def _finish(self, status: JobStatus, holes: bool) -> JobStatus:
        """Write the rest, close the sink (its output durable), then drain everything written."""
        self._copy(status.total, holes)
        self.written = self.sink.close()
        if self.drain:
            self.drained = self.store.drain(self.job, self._written_through())
        return self._status() if self.drain else status

    def _copy(self, stop: int, holes: bool) -> None:
        """Write items ``next..stop-1``, block by block, draining as the output grows. A missing
        record is skipped when ``holes`` allows; else it is an error (drained by another export, or
        damaged records), since a file with a silent gap must not pass for the job's results."""
        for first in range(self.next, stop, self.block):
            last = min(first + self.block, stop)
            records = []
            for index, record in self.store.read(self.job, first, last, self.block):
                if record is None and not holes:
                    raise JobError(f"job {self.job!r}: item {index} is answered but no longer stored "
                                   "(another `tango results --drain` of this job, or damaged records)")
                if record is None:
                    self.skipped = index if self.skipped is None else self.skipped
                else:
                    records.append(record)
            self.sink.write(records)
            self.next = last
            self._drain_written()

    def _drain_written(self) -> None:
        """Once a block's worth more is in the output, sync it and delete it from Redis."""
        self.written = self.sink.flush()
        out = self._written_through()
        if self.drain and out - self.drained >= self.block:
            self.sink.sync()
            self.drained = self.store.drain(self.job, out)

    def _written_through(self) -> int:
        """The end of the run of items, from the export's start, whose records are all in the output:
        only those may be drained. Past the first skipped item, whatever was answered since the read is
        in Redis alone, and its record must stay there."""
        out = self.start + self.written
        return out if self.skipped is None else min(out, self.skipped)

    def _status(self) -> JobStatus:
        return self.poll() if self.poll else self.store.status(self.job)
