"""The stall sweep on a real redis-server, with the Celery client app sending and no workers: what it
re-sends is what lands on the queue."""
from __future__ import annotations

import dataclasses
import json

import pytest

from common.data.corpus import CorpusSpec
from common.data.fingerprint import fingerprint
from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.keys import SWEEPER_LOCK, meta_key
from common.queue.messages import QUEUE_TIER1
from common.queue.results import ResultRecord
from common.queue.store import JobSpec, ResultStore
from common.queue.submission import SubmitRequest, queued_chunks, submit
from common.queue.sweeper import StallSweeper


@pytest.fixture()
def job(redis_url, tmp_path):
    """Job ``s``: 9 items in chunks of 3, on the tier-1 queue."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(9)))
    settings = ClusterSettings(redis_url=redis_url)
    store, app = ResultStore.open(settings), make_app("client", settings)
    submit(store, app, SubmitRequest(path=str(path), chunk_size=3, job_id="s", labels=("a", "b")))
    return store, app


def sweeper(store, app, owner: str = "w1") -> StallSweeper:
    resumed = []
    out = StallSweeper(store, app, interval=60.0, owner=owner, on_resumed=resumed.append)
    out.counted = resumed
    return out


def queued(store) -> list[list[int]]:
    return [[item.index for item in chunk.items] for chunk in queued_chunks(store.client, QUEUE_TIER1)]


def test_a_job_that_stopped_with_nothing_in_flight_is_sent_again_on_the_second_look(job):
    store, app = job
    store.client.delete(QUEUE_TIER1)  # the broker lost every message
    store.write("s", [(i, ResultRecord(str(i), "a", 0.9, 1, "m"), None) for i in (0, 1, 2, 4)])
    first = sweeper(store, app)
    assert first.sweep() == {}  # a first look only marks where the job stands
    store.client.delete(SWEEPER_LOCK)  # the next interval
    again = sweeper(store, app)
    assert again.sweep() == {"s": 5}
    assert queued(store) == [[3, 5], [6, 7, 8]] and again.counted == [5]
    assert store.client.hget(meta_key("s"), "resumed") == "5"


def test_no_resend_while_the_job_moves_or_anything_is_queued_and_one_sweeper_per_interval(job):
    store, app = job
    assert sweeper(store, app).sweep() == {}
    assert sweeper(store, app, owner="w2").sweep() == {}  # the lock: nothing was even looked at
    store.client.delete(SWEEPER_LOCK)
    assert sweeper(store, app).sweep() == {}  # stalled, but its chunks are still queued
    store.client.delete(SWEEPER_LOCK)
    store.client.delete(QUEUE_TIER1)
    store.write("s", [(0, ResultRecord("0", "a", 0.9, 1, "m"), None)])  # it moved since the last look
    assert sweeper(store, app).sweep() == {}
    assert store.client.hget(meta_key("s"), "resumed") is None


def test_a_job_whose_submit_died_is_fed_one_window_per_stall_and_then_counts_as_submitted(redis_url, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(9)))
    settings = ClusterSettings(redis_url=redis_url)
    store, app = ResultStore.open(settings), make_app("client", settings)
    spec, digest = CorpusSpec(labels=("a", "b")), fingerprint(path)
    store.create_job(JobSpec(job="d", total=9, labels=["a", "b"], threshold=0.9, chunk_size=3, window=3,
                             source=str(path), source_size=digest.size, source_sha256=digest.sha256, corpus=json.dumps({**dataclasses.asdict(spec), "skip_invalid": False})))
    store.feeding("d")  # a live submit: never fed behind its back
    assert sweeper(store, app).sweep() == {}
    store.client.delete(SWEEPER_LOCK)
    assert sweeper(store, app).sweep() == {} and queued(store) == []
    store.end_feeding("d")  # the submit is gone before it queued anything
    for window in ([0, 1, 2], [3, 4, 5], [6, 7, 8]):
        store.client.delete(SWEEPER_LOCK)
        assert sweeper(store, app).sweep() == {"d": 3}  # one window, not the whole rest
        assert queued(store) == [window] and store.status("d").state == ("running" if window[0] == 6 else "submitting")
        store.client.delete(QUEUE_TIER1)
        store.write("d", [(i, ResultRecord(str(i), "a", 0.9, 1, "m"), None) for i in window])
        store.client.delete(SWEEPER_LOCK)
        assert sweeper(store, app).sweep() == {}  # it moved since the last look
    assert store.status("d").state == "done" and store.client.hget(meta_key("d"), "resumed") == "9"
