"""Wait for a job to end: poll its status until it is final or a deadline passes.

One loop for every waiter (``tango wait``, the demo's cluster run, the benchmarks), so each one
stops on every final state, cancelled included, and rides out a Redis restart the same way.
What a waiter adds (a progress bar, a stall check) goes in its ``watch`` hook.
"""
from __future__ import annotations

import time
from typing import Callable

import redis

from common.errors import JobError, JobGoneError, ServiceUnavailable, first_line
from common.queue.jobs import JobStatus
from common.queue.store import ResultStore

OUTAGE_GRACE = 60.0  # seconds a waiter rides out an unreachable Redis (a restart) before giving up

# sees every status read, the first included, and the one read before it (None for the first);
# what it raises ends the wait
Watch = Callable[[JobStatus, "JobStatus | None"], None]


def wait_final(store: ResultStore, status: JobStatus, interval: float = 0.5, timeout: float | None = None,
               watch: Watch | None = None, grace: float = OUTAGE_GRACE) -> JobStatus:
    """Poll ``status``'s job every ``interval`` seconds until it is final or ``timeout`` seconds have
    passed; returns the last status read (not final only when the deadline passed). The caller reads
    the first ``status`` itself: it sizes its progress bar from it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    before = None
    while True:
        if watch is not None:
            watch(status, before)
        if status.is_final or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(interval)
        status, before = poll(store, status.job, grace), status


def poll(store: ResultStore, job: str, grace: float = OUTAGE_GRACE) -> JobStatus:
    """The job's status once more, riding out a Redis restart; a job that vanished is an error.

    The caller has seen the job, so a missing record now means it was lost
    (a restart without persistence), never that it finished.
    """
    give_up = time.monotonic() + grace
    while True:
        try:
            return store.status(job)
        except JobGoneError:
            raise
        except JobError:
            raise JobGoneError(f"the records of job {job!r} are gone from Redis at {store.url} "
                               f"while it ran{store.volatility()}; its results are lost: submit it again") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > give_up:
                raise ServiceUnavailable(f"lost Redis at {store.url} for over {grace:.0f} s: "
                                         f"{first_line(exc)}") from None
            time.sleep(1.0)
