"""Bad input at `tango submit`, against a real redis-server: each case is one line naming the record,
with nothing recorded or enqueued; `--skip-invalid` records the bad records as rejected and goes on."""
from __future__ import annotations

import json

import pytest
import redis

from cli.main import cli, run
from common.data.corpus import DEFAULT_MAX_CHARS
from common.queue.keys import meta_key
from common.queue.messages import WorkItem
from common.queue.broker import queued_chunks

GOOD = '{"id": "a", "text": "a fine film"}\n'
BAD_LINES = {  # name: (line 2 of a .jsonl file, what the error says)
    "malformed JSON": (b'{"text": "unclosed\n', "line 2: malformed JSON"),
    "missing text": (b'{"id": "b", "txt": "typo"}\n', "line 2: missing field 'text'"),
    "non-string text": (b'{"id": "b", "text": 42}\n', "line 2: field 'text' must be a string, got int"),
    "empty text": (b'{"id": "b", "text": "   "}\n', "line 2: field 'text' is empty"),
    "invalid UTF-8": (b'{"id": "b", "text": "caf\xe9"}\n', "line 2: not valid UTF-8"),
    "duplicate id": (b'{"id": "a", "text": "again"}\n', "line 2: duplicate id 'a'"),
    "not an object": (b'["a", "list"]\n', "line 2: expected a JSON object, got list"),
    "unknown gold label": (b'{"id": "b", "text": "meh", "label": "neutral"}\n',
                           "line 2: gold label 'neutral' is not one of the job's labels ['neg', 'pos']"),
}


def submit(redis_url: str, path, *args: str) -> int:
    return run(cli, args=["submit", str(path), "--labels", "neg,pos", "--job-id", "j", "--redis-url", redis_url,
                          *args])


def queued_items(client) -> list[WorkItem]:
    return [item for chunk in queued_chunks(client, "tier1") for item in chunk.items]


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_record_stops_submit_naming_its_line(redis_server, redis_url, tmp_path, capsys, case):
    line, message = BAD_LINES[case]
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD.encode() + line + b'{"id": "c", "text": "last"}\n')
    assert submit(redis_url, path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and str(path) in err
    assert redis_server.client().keys("*") == [], "nothing may be recorded or enqueued"


@pytest.mark.parametrize("content, args, message", [
    (b"", (), "no items to label"),
    (b"\n  \n", (), "no items to label"),
    (b"sentence,label\nfine,1\n", (), "line 1: no column 'text'"),
    (b'{"text": "fine"}\n', ("--text-column", "body"), "line 1: missing field 'body'"),
    (GOOD.encode() + b'{"text": "b"}\n{"text": "c"}\n{"text": "d"}\n', ("--max-items", "3"),
     "line 4: item 4 is over the limit of 3 items"),
])
def test_an_unusable_file_stops_submit(redis_server, redis_url, tmp_path, capsys, content, args, message):
    path = tmp_path / ("in.csv" if content.startswith(b"sentence") else "in.jsonl")
    path.write_bytes(content)
    assert submit(redis_url, path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert redis_server.client().keys("*") == []


def test_the_item_limit_comes_from_the_environment_too(redis_server, redis_url, tmp_path, capsys, monkeypatch):
    path = tmp_path / "in.jsonl"
    path.write_text(GOOD + '{"text": "b"}\n')
    monkeypatch.setenv("TANGO_MAX_ITEMS", "1")
    assert submit(redis_url, path) == 2 and "over the limit of 1 items" in capsys.readouterr().err
    assert redis_server.client().keys("*") == []


def test_a_1mb_text_is_cut_to_the_maximum_and_counted(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(GOOD + json.dumps({"id": "big", "text": "word " * 200_000}) + "\n")
    assert submit(redis_url, path) == 0
    assert "1 over-long texts cut" in capsys.readouterr().err
    items = queued_items(redis_server.client())
    assert [len(i.text) for i in items] == [len("a fine film"), DEFAULT_MAX_CHARS]
    assert redis_server.client().hget("tango:{j}:meta", "truncated") == "1"


def test_skip_invalid_records_every_bad_record_and_submits_the_rest(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    bad = [line for line, _ in BAD_LINES.values()]
    body = GOOD.encode() + b"".join(bad[n] + f'{{"id": "ok{n}", "text": "good {n}"}}\n'.encode()
                                    for n in range(len(bad)))
    path.write_bytes(body)
    assert submit(redis_url, path, "--skip-invalid") == 0
    assert f"{len(bad)} invalid records rejected" in capsys.readouterr().err
    client = redis_server.client()
    assert [i.id for i in queued_items(client)] == ["a"] + [f"ok{n}" for n in range(len(bad))]
    assert [i.index for i in queued_items(client)] == list(range(len(bad) + 1))  # indices stay dense
    assert run(cli, args=["status", "j", "--json", "--redis-url", redis_url]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["total"], status["rejected"]) == (len(bad) + 1, len(bad))
    assert [r["line"] for r in status["rejects"]] == [2 + 2 * n for n in range(len(bad))]
    reasons = " ".join(r["reason"] for r in status["rejects"])
    assert all(message.split(": ", 1)[1] in reasons for _, message in BAD_LINES.values())
    assert run(cli, args=["status", "j", "--redis-url", redis_url]) == 0
    assert f"rejected  {len(bad)} invalid input records left out (first: " in capsys.readouterr().out


def test_gold_labels_name_the_job_labels_by_name_in_any_case_or_by_index(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a", "label": "POS"}\n{"text": "b", "label": "0"}\n{"text": "c", "label": "neg"}\n')
    assert submit(redis_url, path) == 0
    assert [item.gold for item in queued_items(redis_server.client())] == ["POS", "0", "neg"]


def test_skip_invalid_drops_an_unknown_gold_label_as_a_reject(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neutral"}\n{"text": "c"}\n')
    assert submit(redis_url, path, "--skip-invalid") == 0
    assert [item.text for item in queued_items(redis_server.client())] == ["a", "c"]
    assert "1 invalid records rejected" in capsys.readouterr().err


def test_a_threshold_out_of_range_names_the_option_typed(redis_server, redis_url, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(GOOD)
    assert submit(redis_url, path, "--threshold", "2") == 2
    err = capsys.readouterr().err
    assert "--threshold must be between 0.5 and 1.0" in err and "confidence_threshold" not in err


def test_standard_input_is_spooled_to_disk_submitted_and_purged_with_its_job(redis_url, tmp_path):
    import subprocess

    from common.testing.cluster import ROOT, cluster_env, tango_argv

    lines = "".join(json.dumps({"id": f"s{i}", "text": f"film number {i}"}) + "\n" for i in range(30))
    env = {**cluster_env(redis_url), "HOME": str(tmp_path)}
    done = subprocess.run(tango_argv("submit", "-", "--labels", "neg,pos", "--job-id", "piped", "--chunk-size", "10"),
                          input=lines, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spooled = tmp_path / ".cache" / "tango" / "spool" / "piped.jsonl"
    assert spooled.read_text() == lines  # resume reads the source again: it stays until purge
    assert [len(c.items) for c in queued_chunks(redis.Redis.from_url(redis_url), "tier1")] == [10, 10, 10]
    for command in (("cancel", "piped"), ("purge", "piped")):
        assert subprocess.run(tango_argv(*command), cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0
    assert not spooled.exists()


def submit_stdin(monkeypatch, home, redis_url: str, data: str, job: str, *args: str) -> int:
    """`tango submit -` in this process, ``data`` on its standard input and ``home`` as $HOME."""
    import io
    import sys

    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    return run(cli, args=["submit", "-", "--labels", "neg,pos", "--job-id", job, "--redis-url", redis_url, *args])


def spooled(home) -> dict[str, str]:
    """Every file in the spool, hidden ones too, by name."""
    root = home / ".cache" / "tango" / "spool"
    return {path.name: path.read_text() for path in root.iterdir()} if root.is_dir() else {}


def test_a_stdin_submit_refused_for_a_taken_id_leaves_that_jobs_spool_alone_and_none_of_its_own(
        redis_server, redis_url, tmp_path, monkeypatch, capsys):
    first, second = GOOD, '{"id": "z", "text": "someone else entirely"}\n'
    assert submit_stdin(monkeypatch, tmp_path, redis_url, first, "taken") == 0
    assert submit_stdin(monkeypatch, tmp_path, redis_url, second, "taken") == 2
    assert "job 'taken' already exists" in capsys.readouterr().err
    assert spooled(tmp_path) == {"taken.jsonl": first}
    client = redis_server.client()
    client.delete("tier1")
    assert run(cli, args=["resume", "taken", "--redis-url", redis_url]) == 0
    assert [item.text for item in queued_items(client)] == ["a fine film"]


@pytest.mark.parametrize("data, url", [(GOOD + '{"text": 42}\n', None), (GOOD, "redis://127.0.0.1:1/0")],
                         ids=["bad record", "redis down"])
def test_a_refused_stdin_submit_leaves_no_spool(redis_server, redis_url, tmp_path, monkeypatch, capsys, data, url):
    assert submit_stdin(monkeypatch, tmp_path, redis_url, data, "refused",
                        *(["--redis-url", url] if url else [])) in (2, 3)
    assert spooled(tmp_path) == {}


def test_purge_deletes_its_own_jobs_spool_and_not_one_whose_id_starts_with_its_own(
        redis_server, redis_url, tmp_path, monkeypatch):
    assert submit_stdin(monkeypatch, tmp_path, redis_url, GOOD, "a") == 0
    assert submit_stdin(monkeypatch, tmp_path, redis_url, GOOD, "a.b") == 0
    for command in ("cancel", "purge"):
        assert run(cli, args=[command, "a", "--redis-url", redis_url]) == 0
    assert spooled(tmp_path) == {"a.b.jsonl": GOOD}


def test_an_error_after_the_job_is_recorded_leaves_it_visibly_resumable(redis_server, redis_url, tmp_path,
                                                                         monkeypatch, capsys):
    """Whatever stops a submit after its record (here a fault in sending) gives up its lease at once:
    `tango status` says its submit is gone and `tango resume` queues all of it."""
    import common.queue.submission as submission

    def broken(*args, **kwargs):
        raise RuntimeError("an unforeseen fault")

    path = tmp_path / "in.jsonl"
    path.write_text(GOOD)
    monkeypatch.setattr(submission, "send_chunk", broken)
    with pytest.raises(RuntimeError):
        submit(redis_url, path)
    monkeypatch.undo()
    capsys.readouterr()
    assert run(cli, args=["status", "j", "--redis-url", redis_url]) == 0
    assert "0 of 1 items queued, and its submit is gone: `tango resume j`" in capsys.readouterr().out
    assert run(cli, args=["resume", "j", "--redis-url", redis_url]) == 0
    assert [item.id for item in queued_items(redis.Redis.from_url(redis_url))] == ["a"]


def test_a_corpus_edited_while_submit_reads_it_cancels_the_job(redis_server, redis_url, tmp_path, monkeypatch,
                                                               capsys):
    """An edit in place between the validating and the sending pass: the texts sent are not the ones
    recorded, so the job cannot stand."""
    import common.queue.submission as submission

    path = tmp_path / "in.jsonl"
    path.write_text(GOOD)
    read = submission.read_corpus

    def edited_first(*args, **kwargs):
        with path.open("r+") as out:
            out.write(GOOD.replace("fine", "vile"))
        return read(*args, **kwargs)

    monkeypatch.setattr(submission, "read_corpus", edited_first)
    assert submit(redis_url, path) == 2
    err = capsys.readouterr().err.strip()
    assert f"job 'j': {path} changed while it was read for queueing" in err and "cancelled it" in err
    assert len(err.splitlines()) == 1
    assert redis_server.client().hget(meta_key("j"), "state") == "cancelled"


def test_a_refused_stdin_submit_names_standard_input_not_its_private_spool(redis_server, redis_url, tmp_path,
                                                                             monkeypatch, capsys):
    assert submit_stdin(monkeypatch, tmp_path, redis_url, GOOD + '{"text": 42}\n', "named") == 2
    err = capsys.readouterr().err
    assert "standard input, line 2: field 'text' must be a string" in err
    assert ".incoming" not in err and "spool" not in err
