"""The cluster's own stall recovery: a running job that stopped moving, with nothing of it queued or
held by any worker, has its unanswered items sent again, with no ``tango wait`` needed anywhere.
So has a job still ``submitting`` whose feeder is gone (its lease lapsed: a submit killed mid-corpus),
one window of items per sweep, so that Redis never holds more of it than the submit would have queued.

Every worker's main process runs ``sweep`` on a timer (``ClusterSettings.sweep_every``, well above the
visibility timeout); a Redis lock lets one of them sweep per interval. A job counts as stalled when
its answered count did not change since the previous sweep, both queues are empty, and no worker
holds a task of it. Re-sending is always safe: results are written only once per item. What a sweep
did goes to the log, to the job's record (``resumed``: items sent again) and to a hook (metrics).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from celery import Celery

from common.errors import TangoError, first_line
from common.queue.keys import SWEEPER_LOCK, meta_key
from common.queue.store import JobStatus, ResultStore
from common.queue.submission import held_jobs, queues_empty, resume

log = logging.getLogger(__name__)


@dataclass
class StallSweeper:
    store: ResultStore
    app: Celery
    interval: float
    owner: str  # who holds the lock, for anyone reading Redis
    on_resumed: Callable[[int], None] = lambda items: None

    def sweep(self) -> dict[str, int]:
        """One sweep, if no other worker swept this interval; returns the items re-sent per job."""
        client = self.store.client
        if not client.set(SWEEPER_LOCK, self.owner, nx=True, px=max(1, int(self.interval * 900))):
            return {}
        active = self.store.active_jobs()
        if not active:
            return {}
        idle = queues_empty(client)
        held = held_jobs(client) if idle else set()
        resumed = {}
        for status in active:
            before = self._mark(status.job, status.answered)
            if idle and before == status.answered and status.job not in held and not status.being_fed:
                resumed[status.job] = self._resume(status)
        return {job: items for job, items in resumed.items() if items}

    def _mark(self, job: str, answered: int) -> int | None:
        """Record this sweep's answered count for the job; returns the previous sweep's."""
        pipe = self.store.client.pipeline()
        pipe.hget(meta_key(job), "swept")
        pipe.hset(meta_key(job), "swept", answered)
        before, _ = pipe.execute()
        return None if before is None else int(before)

    def _resume(self, status: JobStatus) -> int:
        job, answered, total = status.job, status.answered, status.total
        try:
            done = resume(self.store, self.app, job, limit=status.window)
        except TangoError as exc:
            log.error("job %r is stalled at %d of %d items and cannot be resumed here: %s", job, answered, total,
                      first_line(exc))
            return 0
        self.store.client.hincrby(meta_key(job), "resumed", done.items)
        self.on_resumed(done.items)
        if status.state == "submitting":
            log.warning("job %r lost its submit after %d of %d items were queued (its lease lapsed): "
                        "queued %d more in %d chunks", job, status.fed, total, done.items, done.chunks)
        else:
            log.warning("job %r was stalled at %d of %d items with nothing queued or in flight: sent its %d "
                        "unanswered items again in %d chunks", job, answered, total, done.items, done.chunks)
        return done.items
