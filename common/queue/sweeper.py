"""The cluster's own stall recovery: a running job that stopped moving, with nothing of it queued or
held by any worker, has its unanswered items sent again, with no ``tango wait`` needed anywhere.
A job still ``submitting`` whose feeder is gone (its lease lapsed: a submit killed mid-corpus) is fed
on by the sweep, from where its submit stopped, whenever fewer than its window of items are queued and
unanswered, so that Redis never holds more of it than the submit would have queued.

Every worker's main process runs ``sweep`` on a timer (``ClusterSettings.sweep_every``, well above the
visibility timeout); a Redis lock lets one of them sweep per interval. A job counts as stalled when
its answered count did not change since the previous sweep and no message of *it* is queued or held:
another job keeping the queues busy holds nothing back. What is queued or held comes from the broker's
counts (``common.queue.broker.in_broker``), never from message bodies, and only the jobs in the index
of active ones are read. Re-sending is always safe: results are written only once per item. What a
sweep did goes to the log, to the job's record (``resumed``: items sent again) and to a hook (metrics).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from celery import Celery

from common.errors import TangoError, first_line
from common.queue.broker import settled_in_broker
from common.queue.keys import SWEEPER_LOCK
from common.queue.jobs import JobStatus
from common.queue.store import ResultStore
from common.queue.submission import resume

log = logging.getLogger(__name__)


@dataclass
class StallSweeper:
    store: ResultStore
    app: Celery
    interval: float
    owner: str  # who holds the lock, for anyone reading Redis
    on_resumed: Callable[[int], None] = lambda items: None

    def sweep(self) -> dict[str, int]:
        """One sweep, if no other worker swept this interval; returns the items sent per job."""
        client = self.store.client
        if not client.set(SWEEPER_LOCK, self.owner, nx=True, px=max(1, int(self.interval * 900))):
            return {}
        active = self.store.active_jobs()
        if not active:
            return {}
        queued = settled_in_broker(client, [status.job for status in active])
        sent = {}
        for status in active:
            before = self.store.mark_swept(status.job, status.answered)
            if status.being_fed:
                continue
            if before == status.answered and not queued[status.job]:
                sent[status.job] = self._resume(status, start=0, limit=status.window)
            elif status.feeder_lost and (room := feed_room(status)) is not None:
                sent[status.job] = self._resume(status, start=status.fed, limit=room)
        return {job: items for job, items in sent.items() if items}

    def _resume(self, status: JobStatus, start: int, limit: int) -> int:
        job, answered, total = status.job, status.answered, status.total
        try:
            done = resume(self.store, self.app, job, limit=limit, start=start)
        except TangoError as exc:
            log.error("job %r is stalled at %d of %d items and cannot be resumed here: %s", job, answered, total,
                      first_line(exc))
            return 0
        self.store.count_resumed(job, done.items)
        self.on_resumed(done.items)
        if status.state == "submitting":
            log.warning("job %r lost its submit after %d of %d items were queued (its lease lapsed): "
                        "queued %d more in %d chunks", job, status.fed, total, done.items, done.chunks)
        else:
            log.warning("job %r was stalled at %d of %d items with nothing queued or in flight: sent its %d "
                        "unanswered items again in %d chunks", job, answered, total, done.items, done.chunks)
        return done.items


def feed_room(status: JobStatus) -> int | None:
    """How many more items of a job whose submit is gone fit in its window now (0: no window, all of
    them), or None when its queued and unanswered items (``fed - answered``) fill it."""
    if not status.window:
        return 0
    room = status.window - max(0, status.fed - status.answered)
    return room if room > 0 else None
