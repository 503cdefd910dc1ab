"""The stall sweep on a real redis-server, with the Celery client app sending and no workers: what it
re-sends is what lands on the queue."""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from common.data.corpus import CorpusSpec
from common.data.fingerprint import fingerprint
from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.broker import QueueDepth, queue_depths
from common.queue.keys import SWEEPER_LOCK, meta_key
from common.queue.messages import QUEUE_TIER1
from common.queue.results import ResultRecord
from common.queue.store import JobSpec, ResultStore
from common.queue.broker import queued_chunks
from common.queue.submission import SubmitRequest, resume, submit
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


def test_a_job_whose_submit_died_is_fed_a_window_each_sweep_and_then_counts_as_submitted(redis_url, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(9)))
    settings = ClusterSettings(redis_url=redis_url)
    store, app = ResultStore.open(settings), make_app("client", settings)
    store.create_job(file_job("d", path, total=9, chunk_size=3, window=3))
    store.feeding("d")  # a live submit: never fed behind its back
    assert sweeper(store, app).sweep() == {}
    store.client.delete(SWEEPER_LOCK)
    assert sweeper(store, app).sweep() == {} and queued(store) == []
    store.end_feeding("d")  # the submit is gone before it queued anything
    for window in ([0, 1, 2], [3, 4, 5], [6, 7, 8]):
        store.client.delete(SWEEPER_LOCK)
        assert sweeper(store, app).sweep() == {"d": 3}  # one window, not the whole rest
        assert queued(store) == [window] and store.status("d").state == ("running" if window[0] == 6 else "submitting")
        store.client.delete(SWEEPER_LOCK)
        assert sweeper(store, app).sweep() == {}  # its window is queued and unanswered: nothing more fits
        take_and_ack(app, 1)  # a worker answers the window
        store.write("d", [(i, ResultRecord(str(i), "a", 0.9, 1, "m"), None) for i in window])
    assert store.status("d").state == "done" and store.client.hget(meta_key("d"), "resumed") == "9"


def test_a_killed_submit_is_fed_on_from_where_it_stopped_while_it_moves(redis_url, tmp_path):
    """Each sweep tops the window up from what the submit queued, whether or not answers came in
    since the last one, and never re-sends what is queued and unanswered."""
    store, app = ResultStore.open(ClusterSettings(redis_url=redis_url)), make_app("client", ClusterSettings(redis_url=redis_url))
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(12)))
    store.create_job(file_job("k", path, total=12, chunk_size=2, window=6))
    assert resume(store, app, "k", limit=6).items == 6  # what the submit queued before it was killed
    store.end_feeding("k")
    store.client.hset(meta_key("k"), "swept", 0)  # an earlier sweep saw it at 0
    take_and_ack(app, 2)  # workers answer items 0-3; 4 and 5 are still queued
    store.write("k", [(i, ResultRecord(str(i), "a", 0.9, 1, "m"), None) for i in (0, 1, 2, 3)])
    assert sweeper(store, app).sweep() == {"k": 4}  # it moved: fed on from item 6, up to the window
    assert queued(store) == [[4, 5], [6, 7], [8, 9]]


def file_job(job: str, path, total: int, chunk_size: int, window: int) -> JobSpec:
    """A job recorded as submit records it: bound to its source file by size and digest."""
    spec, digest = CorpusSpec(labels=("a", "b")), fingerprint(path)
    return JobSpec(job=job, total=total, labels=["a", "b"], threshold=0.9, chunk_size=chunk_size, window=window,
                   source=str(path), source_size=digest.size, source_sha256=digest.sha256,
                   corpus=json.dumps({**dataclasses.asdict(spec), "skip_invalid": False}))


def take_and_ack(app, count: int) -> None:
    """Take ``count`` tasks off the tier-1 queue through the broker and acknowledge them, as a worker that
    answered them would: they leave the broker's counts too."""
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(QUEUE_TIER1)
        for _ in range(count):
            queue.get(timeout=5).ack()
        queue.close()


def busy_job(store, app, tmp_path, job: str = "busy", items: int = 12) -> None:
    path = tmp_path / f"{job}.jsonl"
    path.write_text("".join(json.dumps({"text": f"busy {i}"}) + "\n" for i in range(items)))
    submit(store, app, SubmitRequest(path=str(path), chunk_size=3, job_id=job, labels=("a", "b")))


def test_a_stalled_job_is_sent_again_while_another_job_keeps_the_queue_busy(job, tmp_path):
    store, app = job
    take_and_ack(app, 3)  # every task of job s left the broker unanswered (acknowledged by a faulty worker)
    busy_job(store, app, tmp_path)
    assert sweeper(store, app).sweep() == {}  # a first look only marks where the jobs stand
    store.client.delete(SWEEPER_LOCK)
    assert sweeper(store, app).sweep() == {"s": 9}  # busy's chunks on the queue hold nothing back
    assert [chunk.job for chunk in queued_chunks(store.client, QUEUE_TIER1)] == ["busy"] * 4 + ["s"] * 3


class Monitor:
    """Every command a redis-server runs while the block runs (``MONITOR``), as lists of words."""

    def __init__(self, server) -> None:
        self.server, self.commands = server, []

    def __enter__(self) -> "Monitor":
        self.monitor = self.server.client().monitor()
        self.monitor.__enter__()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.2)
        return self

    def _read(self) -> None:
        while True:
            command = self.monitor.next_command()["command"]
            if command == "ECHO monitor-end":
                return
            self.commands.append(command.split())

    def __exit__(self, *exc) -> None:
        self.server.client().echo("monitor-end")
        self.thread.join(10)
        self.monitor.__exit__(*exc)


def test_a_sweep_and_a_scrape_read_counts_never_message_bodies_nor_ended_jobs(redis_server, job, tmp_path):
    store, app = job
    busy_job(store, app, tmp_path)
    busy_job(store, app, tmp_path, job="old", items=3)
    store.write("old", [(i, ResultRecord(str(i), "a", 0.9, 1, "m"), None) for i in range(3)])  # ended
    with app.connection_for_read() as conn:  # a worker holds two tasks, unacknowledged
        queue = conn.SimpleQueue(QUEUE_TIER1)
        held = [queue.get(timeout=5), queue.get(timeout=5)]
        assert sweeper(store, app).sweep() == {}  # finds 'old' ended, and drops it from the active jobs
        store.client.delete(SWEEPER_LOCK)
        with Monitor(redis_server) as seen:
            assert sweeper(store, app).sweep() == {}
            assert queue_depths(store.client) == [QueueDepth("tier1", 6, 2), QueueDepth("tier2", 0, 0)]
        for message in held:
            message.ack()
        queue.close()
    assert seen.commands, "MONITOR saw nothing"
    words = [[word.strip('"') for word in command] for command in seen.commands]
    assert [command for command in words if "unacked" in command[1:2] and command[0].upper() != "HLEN"] == []
    assert [command for command in words if command[0].upper() in ("HVALS", "LRANGE", "LINDEX", "HSCAN")] == []
    keys = {word for command in words for word in command[1:]}
    assert meta_key("old") not in keys and meta_key("s") in keys and meta_key("busy") in keys
