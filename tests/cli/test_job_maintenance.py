"""`tango resume` and `tango purge` against a real redis-server (no workers: the queue shows what is sent)."""
from __future__ import annotations

import json
import os

from cli.main import cli, run
from common.queue.config import ClusterSettings
from common.queue.keys import job_keys, meta_key
from common.queue.results import ResultRecord
from common.queue.store import ResultStore
from common.queue.broker import queued_chunks


def queued_indices(client) -> list[list[int]]:
    # kombu pushes left, workers pop right
    return [[item.index for item in chunk.items] for chunk in queued_chunks(client, "tier1")]


def test_resume_resends_only_unanswered_items_read_as_submit_read_them(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"key": f"k{i}", "body": f"text {i}"}) + "\n" for i in range(7))
                    + '{"broken\n')
    args = ["--labels", "a,b", "--redis-url", redis_url]
    assert run(cli, args=["submit", str(path), "--job-id", "r", "--chunk-size", "3", "--text-column", "body",
                          "--id-column", "key", "--skip-invalid", *args]) == 0
    client = redis_server.client()
    assert queued_indices(client) == [[0, 1, 2], [3, 4, 5], [6]]
    client.delete("tier1")  # the broker lost every message
    store = ResultStore.open(ClusterSettings(redis_url=redis_url))
    store.write("r", [(i, ResultRecord(f"k{i}", "a", 0.9, 1, "m"), None) for i in (0, 2, 3, 4, 5)])
    capsys.readouterr()
    assert run(cli, args=["resume", "r", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out.strip() == "resent 2 unanswered items of r in 2 chunks"
    assert queued_indices(client) == [[1], [6]]


def test_purge_deletes_an_ended_job_and_refuses_a_running_one(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n')
    assert run(cli, args=["submit", str(path), "--labels", "a,b", "--job-id", "p", "--redis-url", redis_url]) == 0
    assert run(cli, args=["purge", "p", "--redis-url", redis_url]) == 2
    assert "cancel it before purging" in capsys.readouterr().err
    assert run(cli, args=["cancel", "p", "--redis-url", redis_url]) == 0
    assert run(cli, args=["purge", "p", "--redis-url", redis_url]) == 0
    client = redis_server.client()
    assert client.exists(*job_keys("p")) == 0 and client.zscore("tango:jobs", "p") is None
    assert run(cli, args=["purge", "p", "--redis-url", redis_url]) == 2
    assert "no job 'p'" in capsys.readouterr().err


def test_wait_resends_a_stalled_job_and_only_a_stalled_one(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(4)))
    assert run(cli, args=["submit", str(path), "--labels", "a,b", "--job-id", "w", "--chunk-size", "2",
                          "--redis-url", redis_url]) == 0
    client = redis_server.client()
    wait = ["wait", "w", "--resume-stalled", "--interval", "0.1", "--timeout", "1", "--redis-url", redis_url]
    capsys.readouterr()
    assert run(cli, args=wait) == 1  # no workers: the queued chunks are not a stall
    assert "resent" not in capsys.readouterr().err and queued_indices(client) == [[0, 1], [2, 3]]
    client.delete("tier1")  # now they are lost
    ResultStore.open(ClusterSettings(redis_url=redis_url)).write("w", [(0, ResultRecord("1", "a", 0.9, 1, "m"), None)])
    assert run(cli, args=wait) == 1
    assert "job 'w' stalled; resent 3 unanswered items" in capsys.readouterr().err
    assert queued_indices(client) == [[1], [2, 3]]


def submitted_then_lost(redis_server, redis_url, path, job: str, *args: str):
    """A job submitted from ``path`` whose queued chunks the broker then lost; returns a client."""
    assert run(cli, args=["submit", str(path), "--labels", "a,b", "--job-id", job, "--chunk-size", "2",
                          "--redis-url", redis_url, *args]) == 0
    client = redis_server.client()
    client.delete("tier1")
    return client


def lines(count: int, start: int = 0) -> str:
    return "".join(json.dumps({"id": f"i{i}", "text": f"text {i}"}) + "\n" for i in range(start, start + count))


def test_resume_refuses_a_source_that_grew_after_submit_and_queues_nothing(redis_server, redis_url, tmp_path,
                                                                           capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(lines(4))
    client = submitted_then_lost(redis_server, redis_url, path, "grown")
    with path.open("a") as out:
        out.write(lines(3, start=4))
    capsys.readouterr()
    assert run(cli, args=["resume", "grown", "--redis-url", redis_url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "job 'grown'" in err and str(path) in err and "not the file" in err
    assert queued_indices(client) == [] and client.hget(meta_key("grown"), "state") == "running"


def test_resume_refuses_a_source_with_one_line_edited_to_the_same_size(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(lines(4))
    client = submitted_then_lost(redis_server, redis_url, path, "edited")
    path.write_text(path.read_text().replace("text 2", "txet 2"))
    capsys.readouterr()
    assert run(cli, args=["resume", "edited", "--redis-url", redis_url]) == 2
    assert "job 'edited'" in capsys.readouterr().err and queued_indices(client) == []


def test_resume_refuses_a_source_swapped_in_the_record_for_another_file(redis_server, redis_url, tmp_path, capsys):
    path, other = tmp_path / "in.jsonl", tmp_path / "secret.jsonl"
    path.write_text(lines(4))
    other.write_text(lines(4, start=100))
    client = submitted_then_lost(redis_server, redis_url, path, "forged")
    client.hset(meta_key("forged"), "source", str(other))
    capsys.readouterr()
    assert run(cli, args=["resume", "forged", "--redis-url", redis_url]) == 2
    assert f"job 'forged': {other} is not the file" in capsys.readouterr().err and queued_indices(client) == []


def test_resume_refuses_a_job_recorded_without_its_sources_digest(redis_server, redis_url, tmp_path, capsys):
    """An older tango's job, or one whose digest someone deleted: nothing binds it to a file any more."""
    path = tmp_path / "in.jsonl"
    path.write_text(lines(4))
    client = submitted_then_lost(redis_server, redis_url, path, "old")
    client.hdel(meta_key("old"), "source_size", "source_sha256")
    capsys.readouterr()
    assert run(cli, args=["resume", "old", "--redis-url", redis_url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "job 'old'" in err and "submit it again" in err
    assert queued_indices(client) == []


def test_resume_never_queues_an_index_past_the_jobs_total(redis_server, redis_url, tmp_path):
    """The same file read another way (a record's reading spec rewritten) holds more items than the job."""
    path = tmp_path / "in.jsonl"
    path.write_text(lines(3) + "not json\n" + lines(2, start=3))
    client = submitted_then_lost(redis_server, redis_url, path, "bound", "--skip-invalid")
    corpus = json.loads(client.hget(meta_key("bound"), "corpus"))
    client.hset(meta_key("bound"), "corpus", json.dumps({**corpus, "fmt": "txt"}))  # every line an item: 6 > 5
    assert run(cli, args=["resume", "bound", "--redis-url", redis_url]) == 0
    assert max(index for chunk in queued_indices(client) for index in chunk) == 4


def test_resume_reads_the_file_it_checked_when_the_name_is_swapped_after_the_check(redis_server, redis_url, tmp_path,
                                                                                   monkeypatch):
    import common.queue.submission as submission

    path, other = tmp_path / "in.jsonl", tmp_path / "secret.jsonl"
    path.write_text(lines(4))
    other.write_text(lines(4, start=100))
    client = submitted_then_lost(redis_server, redis_url, path, "swap")
    read = submission.read_corpus

    def swapped_first(*args, **kwargs):
        os.replace(other, path)  # after the check, before the read: a symlink flipped, a file renamed
        return read(*args, **kwargs)

    monkeypatch.setattr(submission, "read_corpus", swapped_first)
    assert run(cli, args=["resume", "swap", "--redis-url", redis_url]) == 0
    assert [item.text for chunk in queued_chunks(client, "tier1") for item in chunk.items] == \
        [f"text {i}" for i in range(4)]
