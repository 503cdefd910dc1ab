"""Keep a job's input in the broker within a window of unanswered items.

Redis is the broker and holds every queued chunk's texts in memory, so a corpus
queued all at once costs Redis its whole size (and a Redis crash loses all of it).
The submitter instead sends a chunk only while fewer than ``limit`` of the items it
sent are still unanswered (waiting on either queue or in a worker's hands): Redis
then holds about ``limit`` items of the job whatever the corpus's size, and the rest
waits in the file until workers answer. A limit of 0 queues everything at once, so
that the submitter can return before any worker is up, at Redis's cost.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from common.errors import ConfigError
from common.queue.jobs import FINAL_STATES
from common.queue.store import ResultStore

log = logging.getLogger(__name__)

MAX_POLL = 0.25  # seconds between looks at the job while the window is full
SAY_EVERY = 60.0  # seconds between log lines about a full window
RECORD_EVERY = 1.0  # seconds between notes of how far the feeder queued (a round trip per chunk slowed it)


def validate_window(limit: int, chunk_size: int, option: str = "--window") -> int:
    """A window smaller than one chunk could never admit a chunk; 0 means no window."""
    if limit != 0 and limit < chunk_size:
        raise ConfigError(f"{option} must be 0 (no window) or at least the chunk size {chunk_size}, got {limit}")
    return limit


@dataclass
class Window:
    """What one feeder (``submit`` or ``resume``) has in flight for one job."""

    store: ResultStore
    job: str
    limit: int
    sent: int = 0
    _answered: int = field(default=0, init=False)  # the job's answered count at the last look
    _base: int = field(default=0, init=False)  # ... and when this feeder started: resume starts mid-job
    _said: float = field(default=float("-inf"), init=False)  # when the log last said the window is full
    _through: int = field(default=0, init=False)  # items 0..through-1 of the job are queued
    _recorded: tuple[int, float] = field(default=(0, float("-inf")), init=False)  # the last note of it, and when
    _alive: float = field(default=float("-inf"), init=False)  # when this feeder last renewed its lease

    def __post_init__(self) -> None:
        self.beat()
        if self.limit:
            self._base = self._answered = self.store.progress(self.job)[1]

    def beat(self) -> None:
        """Renew the feeder's lease a few times within it, so that only a feeder that is gone lets it lapse."""
        if time.monotonic() - self._alive > self.store.feeder_lease / 4:
            self.store.feeding(self.job)
            self._alive = time.monotonic()

    def admit(self, items: int) -> bool:
        """Wait until ``items`` more fit in the window and count them as sent; False when the job ended
        (cancelled, or its record is gone) and nothing more should be sent."""
        if self.limit and not self._fits(items):
            if not self._wait(items):
                return False
        self.sent += items
        return True

    def queued(self, through: int) -> None:
        """Items up to ``through`` are on the queue: noted in the job's record now and then, and always
        when the feeder waits or ends, for ``tango status`` while the job is submitting."""
        self._through = max(self._through, through)
        if time.monotonic() - self._recorded[1] > RECORD_EVERY:
            self.record()
            self.beat()

    def record(self) -> None:
        if self._through > self._recorded[0]:
            self.store.mark_fed(self.job, self._through)
            self._recorded = (self._through, time.monotonic())

    def _fits(self, items: int) -> bool:
        """Answers only grow, so a stale count can only overstate what is in flight."""
        in_flight = self.sent - (self._answered - self._base)
        return in_flight <= 0 or in_flight + items <= self.limit

    def _wait(self, items: int) -> bool:
        self.record()
        delay = 0.005
        while True:
            self.beat()
            state, self._answered = self.store.progress(self.job)
            if state is None or state in FINAL_STATES:
                log.info("job %r is %s: stopped queueing its input", self.job, state or "gone")
                return False
            if self._fits(items):
                return True
            if time.monotonic() - self._said > SAY_EVERY:
                log.info("job %r: %d items in flight fill its window of %d; queueing more as workers answer",
                         self.job, self.sent - (self._answered - self._base), self.limit)
                self._said = time.monotonic()
            time.sleep(delay)
            delay = min(delay * 2, MAX_POLL)
