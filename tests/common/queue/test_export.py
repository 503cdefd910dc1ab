"""Exporting while a job runs and draining what is out, on a real redis-server: the answered bitmap
keeps writes idempotent and resume exact after the results themselves are gone from Redis."""
from __future__ import annotations

import json
import random
import threading
import time

import pyarrow.parquet as pq
import pytest

from common.errors import JobError
from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.export import Exporter
from common.queue.keys import answered_key, audits_key, failures_key, job_keys, meta_key, results_key
from common.queue.messages import QUEUE_TIER1
from common.queue.results import AuditOutcome, ParquetSink, ResultRecord, TextSink
from common.queue.store import JobSpec, ResultStore
from common.queue.broker import queued_chunks
from common.queue.submission import SubmitRequest, resume, submit

LABELS = ["negative", "positive"]


@pytest.fixture()
def store(redis_url) -> ResultStore:
    return ResultStore.open(ClusterSettings(redis_url=redis_url))


def make_job(store: ResultStore, job: str = "d1", total: int = 10) -> str:
    store.create_job(JobSpec(job=job, total=total, labels=LABELS, threshold=0.9, chunk_size=4))
    store.mark_submitted(job)
    return job


def entry(index: int, tier: int = 1, correct: bool | None = True, failed: bool = False):
    if failed:
        return index, ResultRecord.failed(f"id{index}", tier, "model error: boom"), None
    return index, ResultRecord(f"id{index}", "positive", 0.5 + index / 10_000, tier, f"m{tier}"), correct


def counters(store: ResultStore, job: str) -> dict:
    meta = store.client.hgetall(meta_key(job))
    return {name: meta[name] for name in ("done", "failed", "tier1", "tier2", "gold", "correct", "state")}


def test_a_drained_item_written_again_is_not_stored_and_counts_nothing(store):
    job = make_job(store, total=6)
    assert store.write(job, [entry(0), entry(1, tier=2, correct=False), entry(2, failed=True), entry(3)]) == 4
    before = counters(store, job)
    assert store.drain(job, 4) == 4
    assert store.client.hlen(results_key(job)) == 0 and store.client.hlen(failures_key(job)) == 0
    # a redelivered chunk, now with other outcomes: the bitmap, not the emptied hashes, decides
    assert store.write(job, [entry(0, tier=2), entry(1), entry(2), entry(3, failed=True)]) == 0
    assert counters(store, job) == before
    assert store.client.hlen(results_key(job)) == 0 and store.client.hlen(failures_key(job)) == 0
    assert store.write(job, [entry(4), entry(5)]) == 2 and store.status(job).state == "failed"
    assert store.status(job).drained == 4 and set(store.answered(job)) == set(range(6))


def test_drain_stops_at_the_first_unanswered_item_and_never_goes_back(store):
    job = make_job(store, total=20)
    store.write(job, [entry(i) for i in (0, 1, 2, 4, 5)])
    assert store.drain(job, 6) == 3  # item 3 is unanswered: 4 and 5 stay
    assert sorted(store.client.hkeys(results_key(job)), key=int) == ["4", "5"]
    assert store.drain(job, 2) == 3
    store.write(job, [entry(3)])
    assert store.drain(job, 20) == 6 and store.client.hlen(results_key(job)) == 0


@pytest.mark.parametrize("answered, start, expected", [
    ([], 0, 0), ([], 13, 13), ([], 16, 16), (range(5), 0, 5), (range(8), 3, 8), (range(16), 8, 16), (range(20), 0, 20),
    ([*range(9), *range(10, 20)], 0, 9), ([*range(9), *range(10, 20)], 10, 20), ([0, 1, 2, 11], 11, 12),
])
def test_the_frontier_is_the_end_of_the_answered_run(store, answered, start, expected):
    job = make_job(store, total=20)
    store.write(job, [entry(i) for i in answered])
    assert store.frontier(job, start) == expected


def test_answered_reads_the_bitmap_as_a_set(store):
    job = make_job(store, total=30)
    store.write(job, [entry(i) for i in (0, 7, 8, 29)])
    answered = store.answered(job)
    assert answered == {0, 7, 8, 29} and len(answered) == 4
    assert 29 in answered and 9 not in answered and 1000 not in answered and -1 not in answered
    assert store.answered("other") == set()


def test_a_drained_job_is_refused_whole_in_one_line_and_partial_starts_after_it(store):
    job = make_job(store, total=5)
    store.write(job, [entry(i) for i in range(5)])
    store.drain(job, 3)
    with pytest.raises(JobError) as caught:
        list(store.iter_results(job))
    message = str(caught.value)
    assert "items 0-2 (3 of 5) are no longer in Redis" in message and "--partial" in message
    assert "\n" not in message
    assert [r.id for r in store.iter_results(job, partial=True)] == ["id3", "id4"]


def test_purge_deletes_the_answered_bitmap(store):
    job = make_job(store, total=2)
    store.write(job, [entry(0), entry(1)])
    assert store.client.exists(answered_key(job)) and answered_key(job) in job_keys(job)
    store.purge(job)
    assert store.client.exists(*job_keys(job)) == 0


def test_follow_and_drain_while_a_thread_writes_chunks_in_random_order(store, tmp_path):
    total, size = 1200, 40
    job = make_job(store, total=total)
    chunks = [list(range(start, min(start + size, total))) for start in range(0, total, size)]
    random.Random(3).shuffle(chunks)
    failed = {17, 555}

    def worker() -> None:
        for number, chunk in enumerate(chunks):
            store.write(job, [entry(i, tier=1 + i % 2, failed=i in failed) for i in chunk])
            if number % 4 == 0:  # a redelivery of an earlier chunk, likely drained by now
                store.write(job, [entry(i) for i in chunks[number // 2]])
            time.sleep(0.005)

    out = tmp_path / "out.jsonl"
    thread = threading.Thread(target=worker)
    with out.open("w", encoding="utf-8") as handle:
        exporter = Exporter(store, job, TextSink(handle), drain=True, block=100)
        seen = []
        thread.start()
        status = exporter.follow(store.status(job), interval=0.01, progress=lambda s, n: seen.append(n))
    thread.join()
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [f"id{i}" for i in range(total)]
    assert {i for i, line in enumerate(lines) if "error" in line} == failed
    assert (status.state, status.done, status.failed, status.drained) == ("failed", total - 2, 2, total)
    assert store.client.hlen(results_key(job)) == 0 and store.client.hlen(failures_key(job)) == 0
    assert seen == sorted(seen) and seen[-1] == total and len(set(seen)) > 2, "it wrote as the job went"


def test_follow_of_a_cancelled_job_writes_what_was_answered(store, tmp_path):
    job = make_job(store, total=6)
    store.write(job, [entry(i) for i in (0, 1, 3)])
    store.cancel(job)
    out = tmp_path / "out.jsonl"
    with out.open("w", encoding="utf-8") as handle:
        status = Exporter(store, job, TextSink(handle), drain=True, block=2).follow(store.status(job))
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["id0", "id1", "id3"]
    assert status.drained == 2 and store.client.hkeys(results_key(job)) == ["3"]  # past the hole it stays


def test_parquet_export_is_written_in_row_groups_and_drained_behind_them(store, tmp_path):
    job = make_job(store, total=25)
    store.write(job, [entry(i, failed=i == 4) for i in range(25)])
    path = tmp_path / "out.parquet"
    drains = []
    with path.open("wb") as handle:
        exporter = Exporter(store, job, ParquetSink(handle, row_group=10), drain=True, block=5)
        original = store.drain
        store.drain = lambda job, stop: drains.append(stop) or original(job, stop)
        exporter.once(store.status(job))
    table = pq.read_table(path)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3 and table.num_rows == 25
    assert table.column("id").to_pylist() == [f"id{i}" for i in range(25)]
    assert table.column("error").to_pylist()[4] == "model error: boom" and table.column("label")[4].as_py() is None
    assert table.column("tier").to_pylist()[:3] == [1, 1, 1] and table.column("score")[3].as_py() == 0.5003
    assert drains == [10, 20, 25], "only what is in a written row group may be deleted"


@pytest.fixture()
def submitted(redis_url, tmp_path):
    """Job ``r``: 9 items in chunks of 3, its queued chunks lost."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(9)))
    settings = ClusterSettings(redis_url=redis_url)
    store, app = ResultStore.open(settings), make_app("client", settings)
    submit(store, app, SubmitRequest(path=str(path), chunk_size=3, job_id="r", labels=("a", "b")))
    store.client.delete(QUEUE_TIER1)
    return store, app


def test_resume_after_a_drain_sends_only_what_was_never_answered(submitted):
    store, app = submitted
    store.write("r", [(i, ResultRecord(str(i), "a", 0.9, 1, "m"), None) for i in (0, 1, 2, 3, 5)])
    assert store.drain("r", 9) == 4 and store.client.hkeys(results_key("r")) == ["5"]
    done = resume(store, app, "r")
    queued = [[item.index for item in chunk.items] for chunk in queued_chunks(store.client, QUEUE_TIER1)]
    assert (done.items, queued) == (4, [[4], [6, 7, 8]])


class LandingSink(TextSink):
    """A text sink that lets items land in Redis once it has the records (when ``close`` syncs):
    what a worker does between the export's read and its drain."""

    def __init__(self, out, land) -> None:
        super().__init__(out)
        self.land = land

    def close(self) -> int:
        written = super().close()
        self.land()
        return written


def test_a_partial_drain_never_deletes_an_item_answered_after_its_read(store, tmp_path):
    job = make_job(store, total=8)
    store.write(job, [entry(i) for i in (0, 1, 2, 4, 5)])
    out = tmp_path / "out.jsonl"
    with out.open("w", encoding="utf-8") as handle:
        sink = LandingSink(handle, lambda: store.write(job, [entry(3)]))
        status = Exporter(store, job, sink, drain=True, block=2).once(store.status(job), partial=True)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["id0", "id1", "id2", "id4", "id5"]
    assert status.drained == 3, "the drain stops at the item this export skipped"
    assert sorted(store.client.hkeys(results_key(job)), key=int) == ["3", "4", "5"]
    again = tmp_path / "again.jsonl"
    with again.open("w", encoding="utf-8") as handle:
        Exporter(store, job, TextSink(handle), drain=True).once(store.status(job), partial=True)
    assert [json.loads(line)["id"] for line in again.read_text().splitlines()] == ["id3", "id4", "id5"]


def test_a_following_drain_of_a_cancelled_job_keeps_what_lands_after_its_read(store, tmp_path):
    job = make_job(store, total=6)
    store.write(job, [entry(i) for i in (0, 1, 3)])
    store.cancel(job)
    out = tmp_path / "out.jsonl"
    with out.open("w", encoding="utf-8") as handle:
        sink = LandingSink(handle, lambda: store.write(job, [entry(2), entry(4), entry(5)]))
        status = Exporter(store, job, sink, drain=True, block=2).follow(store.status(job), interval=0.01)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["id0", "id1", "id3"]
    assert status.drained == 2
    assert sorted(store.client.hkeys(results_key(job)), key=int) == ["2", "3", "4", "5"]


def test_a_partial_parquet_drain_stops_at_its_first_skipped_item_within_row_groups(store, tmp_path):
    job = make_job(store, total=30)
    store.write(job, [entry(i) for i in range(30) if i != 12])
    drains = []
    original = store.drain
    store.drain = lambda job, stop: drains.append(stop) or original(job, stop)
    with (tmp_path / "out.parquet").open("wb") as handle:
        sink = ParquetSink(handle, row_group=10)
        Exporter(store, job, sink, drain=True, block=5).once(store.status(job), partial=True)
    assert drains == [10, 12] and store.status(job).drained == 12
    assert store.client.hlen(results_key(job)) == 30 - 12 - 1


def audited(store: ResultStore, job: str) -> tuple[int, int]:
    status = store.status(job)
    return status.audited, status.audit_agreed


def test_drain_deletes_the_audit_records_of_drained_items_and_keeps_their_counts(store):
    job = make_job(store, total=6)
    store.write(job, [entry(i) for i in range(6)])
    checks = [AuditOutcome(i, "positive", "positive" if i != 3 else "negative") for i in (1, 3, 5)]
    assert store.audit(job, checks) == 3
    assert store.drain(job, 4) == 4
    assert store.client.hkeys(audits_key(job)) == ["5"] and audited(store, job) == (3, 2)
    assert store.audit(job, checks) == 0, "a redelivered audit of a drained item counts nothing again"
    assert audited(store, job) == (3, 2)
    late = [AuditOutcome(2, "positive", "positive")]
    assert store.audit(job, late) == 1 and store.audit(job, late) == 0, "a late audit counts once"
    assert audited(store, job) == (4, 3) and store.client.hkeys(audits_key(job)) == ["5"]
    assert store.drain(job, 6) == 6
    left = {key for key in job_keys(job) if store.client.exists(key)}
    assert audits_key(job) not in left and results_key(job) not in left and failures_key(job) not in left
