"""The one wait loop: every final state ends it, the deadline too, its hook sees every look, and a
Redis restart is ridden out for its grace (against real redis-servers)."""
from __future__ import annotations

import threading
import time

import pytest

from common.errors import JobGoneError, ServiceUnavailable
from common.queue.config import ClusterSettings
from common.queue.results import ResultRecord
from common.queue.jobs import JobSpec, JobStatus
from common.queue.store import ResultStore
from common.queue.waiting import wait_final
from common.testing.cluster import start_redis

LABELS = ["negative", "positive"]


def open_job(url: str, total: int = 2) -> tuple[ResultStore, JobStatus]:
    store = ResultStore.open(ClusterSettings(redis_url=url))
    store.create_job(JobSpec(job="w1", total=total, labels=LABELS, threshold=0.9, chunk_size=total))
    store.mark_submitted("w1")
    return store, store.status("w1")


def answer(store: ResultStore, *indexes: int) -> None:
    store.write("w1", [(i, ResultRecord(f"id{i}", "positive", 0.9, 1, "m"), None) for i in indexes])


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


@pytest.mark.parametrize("end", ["done", "cancelled"])
def test_the_wait_ends_on_every_final_state(redis_url, end):
    store, status = open_job(redis_url)
    finish = (lambda: answer(store, 0, 1)) if end == "done" else (lambda: store.cancel("w1"))
    thread = later(0.3, finish)
    start = time.monotonic()
    final = wait_final(store, status, interval=0.05, timeout=30)
    thread.join()
    assert final.state == end and time.monotonic() - start < 10


def test_the_watch_sees_every_look_with_the_one_before(redis_url):
    store, status = open_job(redis_url)
    answer(store, 0, 1)  # after the first look: the next one finds the job done
    seen = []
    wait_final(store, status, interval=0.05,
               watch=lambda now, before: seen.append((now.answered, None if before is None else before.answered)))
    assert seen == [(0, None), (2, 0)]


def test_a_watch_that_raises_ends_the_wait(redis_url):
    store, status = open_job(redis_url)

    def give_up(now: JobStatus, before: JobStatus | None) -> None:
        if before is not None:
            raise RuntimeError("stalled")

    with pytest.raises(RuntimeError, match="stalled"):
        wait_final(store, status, interval=0.05, watch=give_up)


def test_past_the_deadline_the_wait_returns_the_unfinished_status(redis_url):
    store, status = open_job(redis_url)
    start = time.monotonic()
    last = wait_final(store, status, interval=0.05, timeout=0.3)
    assert last.state == "running" and not last.is_final and 0.3 <= time.monotonic() - start < 5


def test_a_redis_restart_within_the_grace_is_ridden_out(tmp_path):
    server = start_redis(tmp_path, "--appendonly", "yes")  # the job outlives the restart
    try:
        store, status = open_job(server.url)
        answer(store, 0)
        server.stop()
        thread = later(1.5, lambda: (server.restart(), answer(store, 1)))
        final = wait_final(store, status, interval=0.05, timeout=60, grace=30)
        thread.join()
        assert final.state == "done" and final.answered == 2
    finally:
        server.stop()


def test_a_job_lost_in_a_restart_is_gone_and_a_redis_away_past_the_grace_unavailable(tmp_path):
    server = start_redis(tmp_path)  # no persistence: a restart loses the job
    try:
        store, status = open_job(server.url)
        server.stop()
        with pytest.raises(ServiceUnavailable, match=f"lost Redis at {server.url} for over 1 s"):
            wait_final(store, status, interval=0.05, grace=1)
        server.restart()
        with pytest.raises(JobGoneError, match="records of job 'w1' are gone from Redis .* while it ran"):
            wait_final(store, status, interval=0.05)
    finally:
        server.stop()
