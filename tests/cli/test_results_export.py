"""`tango results --follow/--drain/--format parquet` against a real redis-server, in this process,
with a thread standing in for the workers."""
from __future__ import annotations

import json
import random
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from cli.main import cli, run
from common.queue.config import ClusterSettings
from common.queue.keys import failures_key, results_key
from common.queue.results import ResultRecord
from common.queue.store import JobSpec, ResultStore


@pytest.fixture()
def store(redis_url) -> ResultStore:
    return ResultStore.open(ClusterSettings(redis_url=redis_url))


def make_job(store: ResultStore, job: str, total: int) -> str:
    store.create_job(JobSpec(job=job, total=total, labels=["neg", "pos"], threshold=0.9, chunk_size=8))
    store.mark_submitted(job)
    return job


def record(index: int, failed: set[int] = frozenset()) -> tuple[int, ResultRecord, None]:
    if index in failed:
        return index, ResultRecord.failed(f"x{index}", 2, "tier 2 model error: boom"), None
    return index, ResultRecord(f"x{index}", "pos", 0.75, 1 + index % 2, "m"), None


def tango(url: str, *args: str) -> int:
    return run(cli, args=[*args, "--redis-url", url])


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tango: error: "), lines
    return lines[0]


def test_follow_drain_writes_a_running_job_in_order_then_exits_as_wait(store, redis_url, tmp_path, capsys):
    job, total, failed = make_job(store, "f", 500), 500, {42}
    chunks = [range(start, start + 25) for start in range(0, total, 25)]
    random.Random(1).shuffle(chunks)

    def workers() -> None:
        for chunk in chunks:
            store.write(job, [record(i, failed) for i in chunk])
            time.sleep(0.01)

    thread = threading.Thread(target=workers)
    thread.start()
    out = tmp_path / "f.jsonl"
    code = tango(redis_url, "results", job, "-o", str(out), "--follow", "--drain", "--interval", "0.05")
    thread.join()
    assert code == 1  # an item failed
    err = capsys.readouterr().err
    assert "ended failed (1 failed items)" in err and f"wrote {total} results to {out}; {total} of {total} now " \
        "drained from Redis" in err
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [f"x{i}" for i in range(total)]
    assert lines[42]["error"] == "tier 2 model error: boom" and "error" not in lines[41]
    assert store.client.hlen(results_key(job)) == 0 and store.client.hlen(failures_key(job)) == 0

    assert tango(redis_url, "status", job) == 0
    assert f"drained   {total} results (items 0-{total - 1})" in capsys.readouterr().out
    assert tango(redis_url, "status", job, "--json") == 0
    assert json.loads(capsys.readouterr().out)["drained"] == total

    again = tmp_path / "again.jsonl"
    assert tango(redis_url, "results", job, "-o", str(again)) == 2
    assert f"items 0-{total - 1} ({total} of {total}) are no longer in Redis" in one_line_error(capsys)
    assert not again.exists(), "no partial file passes for the job's results"
    assert tango(redis_url, "results", job, "-o", str(again), "--follow") == 2 and not again.exists()
    capsys.readouterr()
    assert tango(redis_url, "results", job, "-o", str(again), "--partial") == 0 and again.read_text() == ""


def test_parquet_output_by_suffix_has_the_job_rows(store, redis_url, tmp_path, capsys):
    job = make_job(store, "pq", 30)
    store.write(job, [record(i, {7}) for i in range(30)])
    out = tmp_path / "out.parquet"
    assert tango(redis_url, "results", job, "-o", str(out), "--follow") == 1
    table = pq.read_table(out)
    assert table.column_names == ["id", "label", "score", "tier", "model", "error"]
    assert table.column("id").to_pylist() == [f"x{i}" for i in range(30)]
    assert table.column("error").to_pylist()[7] == "tier 2 model error: boom"
    assert table.column("tier").to_pylist()[:4] == [1, 2, 1, 2]
    assert store.client.hlen(results_key(job)) == 29, "without --drain nothing is deleted"


def test_follow_of_a_finished_job_exits_zero_and_an_fsspec_url_takes_the_output(store, redis_url, capsys):
    import fsspec

    job = make_job(store, "mem", 12)
    store.write(job, [record(i) for i in range(12)])
    assert tango(redis_url, "results", job, "-o", "memory://exports/mem.csv", "--follow") == 0
    rows = fsspec.filesystem("memory").cat("/exports/mem.csv").decode().splitlines()
    assert rows[0] == "id,label,score,tier,model,error" and rows[1] == "x0,pos,0.75,1,m," and len(rows) == 13


@pytest.mark.parametrize("args, message", [
    (["--drain"], "--drain needs -o with a local file"),
    (["--drain", "-o", "s3://bucket/out.jsonl"], "--drain needs -o with a local file"),
    (["-o", "nope://bucket/out.jsonl"], "cannot write nope://bucket/out.jsonl"),
    (["-o", "{tmp}/missing/out.jsonl"], "cannot write {tmp}/missing/out.jsonl"),
    (["-o", "{tmp}/exists.jsonl", "--drain"], "{tmp}/exists.jsonl exists"),
])
def test_bad_outputs_are_one_line(store, redis_url, tmp_path, capsys, args, message):
    make_job(store, "e", 2)
    store.write("e", [record(0), record(1)])
    (tmp_path / "exists.jsonl").write_text("kept\n")
    assert tango(redis_url, "results", "e", *[a.format(tmp=tmp_path) for a in args]) == 2
    assert message.format(tmp=tmp_path) in one_line_error(capsys)
    assert (tmp_path / "exists.jsonl").read_text() == "kept\n" and store.client.hlen(results_key("e")) == 2


def test_an_url_without_fsspec_is_one_line_and_local_paths_still_work(store, redis_url, tmp_path, capsys, monkeypatch):
    make_job(store, "nofs", 1)
    store.write("nofs", [record(0)])
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    assert tango(redis_url, "results", "nofs", "-o", "s3://bucket/out.jsonl") == 2
    assert "needs fsspec (pip install fsspec)" in one_line_error(capsys)
    assert tango(redis_url, "results", "nofs", "-o", str(tmp_path / "out.jsonl")) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["id"] == "x0"


def test_partial_drain_keeps_an_item_that_lands_before_its_drain(store, redis_url, tmp_path, capsys, monkeypatch):
    job = make_job(store, "late", 6)
    store.write(job, [record(i) for i in (0, 1, 3, 4)])
    drain = ResultStore.drain

    def landing(self, job, stop):  # item 2 is answered after the export read past it, before the drain
        self.write(job, [record(2)])
        return drain(self, job, stop)

    monkeypatch.setattr(ResultStore, "drain", landing)
    out, again = tmp_path / "out.jsonl", tmp_path / "again.jsonl"
    assert tango(redis_url, "results", job, "--partial", "--drain", "-o", str(out)) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["x0", "x1", "x3", "x4"]
    monkeypatch.setattr(ResultStore, "drain", drain)
    assert tango(redis_url, "results", job, "--partial", "-o", str(again)) == 0
    assert [json.loads(line)["id"] for line in again.read_text().splitlines()] == ["x2", "x3", "x4"]
