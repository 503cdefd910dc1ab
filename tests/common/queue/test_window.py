"""The feeder's window against a real redis-server: it holds a chunk back until workers answer,
stops for an ended job, and counts from where a resume starts."""
from __future__ import annotations

import threading
import time

import pytest

from common.errors import ConfigError
from common.queue.config import ClusterSettings
from common.queue.keys import meta_key
from common.queue.results import ResultRecord
from common.queue.store import JobSpec, ResultStore
from common.queue.window import Window, validate_window

LABELS = ["negative", "positive"]


@pytest.fixture()
def store(redis_url) -> ResultStore:
    return ResultStore.open(ClusterSettings(redis_url=redis_url))


def make_job(store: ResultStore, total: int = 100) -> str:
    store.create_job(JobSpec(job="w1", total=total, labels=LABELS, threshold=0.9, chunk_size=5))
    return "w1"


def answer(store: ResultStore, job: str, indexes: range) -> None:
    store.write(job, [(i, ResultRecord(f"id{i}", "positive", 0.99, 1, "m"), None) for i in indexes])


def admit_in_background(window: Window, items: int) -> tuple[threading.Thread, list[bool]]:
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(window.admit(items)), daemon=True)
    thread.start()
    return thread, outcome


def test_a_full_window_holds_the_next_chunk_until_workers_answer(store):
    job = make_job(store)
    window = Window(store, job, limit=10)
    assert window.admit(5) and window.admit(5)  # exactly full
    thread, outcome = admit_in_background(window, 5)
    thread.join(0.5)
    assert thread.is_alive() and not outcome  # nothing answered: the chunk waits
    answer(store, job, range(0, 4))
    thread.join(0.5)
    assert thread.is_alive()  # 6 still in flight: 6 + 5 > 10
    answer(store, job, range(4, 5))
    thread.join(5)
    assert outcome == [True] and window.sent == 15


def test_a_window_stops_feeding_a_job_that_was_cancelled_meanwhile(store):
    job = make_job(store)
    window = Window(store, job, limit=5)
    assert window.admit(5)
    thread, outcome = admit_in_background(window, 5)
    time.sleep(0.2)
    store.cancel(job)
    thread.join(5)
    assert outcome == [False] and window.sent == 5


def test_a_chunk_larger_than_what_is_left_of_the_window_goes_once_nothing_is_in_flight(store):
    job = make_job(store)
    window = Window(store, job, limit=5)
    assert window.admit(5)
    answer(store, job, range(0, 5))
    assert window.admit(5)


def test_a_resume_counts_only_the_answers_given_after_it_started(store):
    job = make_job(store)
    answer(store, job, range(0, 8))  # answered before the resume: not this feeder's
    window = Window(store, job, limit=10)
    assert window.admit(10)
    thread, outcome = admit_in_background(window, 5)
    thread.join(0.3)
    assert thread.is_alive()
    answer(store, job, range(8, 13))
    thread.join(5)
    assert outcome == [True]


def test_no_window_admits_everything_without_reading_redis(store):
    window = Window(store, "no-such-job", limit=0)
    assert all(window.admit(1000) for _ in range(5)) and window.sent == 5000


def test_a_window_below_one_chunk_is_refused_by_name():
    assert validate_window(0, 64) == 0 and validate_window(64, 64) == 64
    with pytest.raises(ConfigError, match=r"--window must be 0 \(no window\) or at least the chunk size 64, got 10"):
        validate_window(10, 64)


def test_what_was_queued_only_moves_forward_and_never_recreates_a_job(store):
    job = make_job(store)
    store.mark_fed(job, 40)
    store.mark_fed(job, 10)  # a resume re-sending early items
    assert store.status(job).fed == 40
    store.cancel(job)
    store.purge(job)
    store.mark_fed(job, 50)
    assert not store.client.exists(meta_key(job)) and store.progress(job) == (None, 0)


def test_a_feeder_holds_a_lease_on_its_job_while_it_feeds_and_waits_and_gives_it_up_when_done(redis_url):
    store = ResultStore.open(ClusterSettings(redis_url=redis_url, feeder_lease=0.4))
    job = make_job(store)
    assert store.status(job).feeder  # a job is recorded with its submit's lease
    time.sleep(0.5)
    assert store.status(job).feeder_lost  # ... which lapses unless a feeder renews it
    window = Window(store, job, limit=5)
    assert store.status(job).feeder and not store.status(job).feeder_lost
    assert window.admit(5)
    thread, outcome = admit_in_background(window, 5)
    time.sleep(1.0)  # more than twice the lease, all of it waiting on the full window
    assert thread.is_alive() and not store.status(job).feeder_lost
    answer(store, job, range(0, 5))
    thread.join(5)
    assert outcome == [True]
    store.mark_submitted(job)
    status = store.status(job)
    assert (status.state, status.feeder, status.feeder_lost) == ("running", False, False)


def test_a_feeder_that_stops_renewing_is_taken_for_gone_once_its_lease_lapses(redis_url):
    store = ResultStore.open(ClusterSettings(redis_url=redis_url, feeder_lease=0.3))
    job = make_job(store)
    Window(store, job, limit=5).admit(5)  # then it dies: nothing renews the lease
    assert not store.status(job).feeder_lost
    time.sleep(0.5)
    status = store.status(job)
    assert status.state == "submitting" and status.feeder_lost
