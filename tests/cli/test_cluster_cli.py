"""The cluster commands as a user runs them: real `tango` processes against a real redis-server."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.testing.cluster import ROOT, cluster_env, free_port, run_tango


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"x{i}", "text": f"item number {i}"}) + "\n" for i in range(10)))
    return path


@pytest.mark.parametrize("command", [["status", "j1"], ["jobs"], ["submit", "in.jsonl", "--labels", "a,b"]])
def test_an_unreachable_redis_is_one_line_naming_the_masked_url(command):
    url = f"redis://admin:hunter2@127.0.0.1:{free_port()}/0"
    done = run_tango(*command, redis_url=url, timeout=60)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "redis://admin:***@127.0.0.1" in lines[0] and "hunter2" not in done.stderr + done.stdout


def test_cluster_commands_import_neither_torch_nor_transformers(redis_url, corpus):
    """A job's clock starts with ``tango submit``: importing transformers alone costs it ~0.5 s."""
    code = ("import sys; from cli.main import cli, run; "
            f"assert run(cli, args=['submit', {str(corpus)!r}, '--labels', 'a,b', '--job-id', 'j1']) == 0; "
            "assert run(cli, args=['status', 'j1']) == 0; assert run(cli, args=['jobs']) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cluster_env(redis_url), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_bad_line_stops_submit_with_nothing_enqueued(redis_server, redis_url, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"txt": "typo"}\n')
    done = run_tango("submit", str(path), "--labels", "a,b", redis_url=redis_url)
    assert done.returncode == 2
    assert "line 3: missing field 'text'" in done.stderr and "Traceback" not in done.stderr
    assert redis_server.client().keys("*") == []


@pytest.mark.parametrize("args, message", [
    (["--job-id", "a}b", "--labels", "a,b"], "invalid job id"),
    (["--threshold", "0.2", "--labels", "a,b"], "between 0.5 and 1.0"),
    (["--chunk-size", "0", "--labels", "a,b"], "--chunk-size"),
    ([], "cannot tell which labels"),
])
def test_submit_refuses_bad_options_before_enqueueing(redis_server, redis_url, corpus, args, message):
    done = run_tango("submit", str(corpus), *args, redis_url=redis_url)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert redis_server.client().llen("tier1") == 0


def test_job_lifecycle_commands(redis_server, redis_url, corpus):
    submitted = run_tango("submit", str(corpus), "--labels", "neg,pos", "--job-id", "life", "--chunk-size", "4",
                          redis_url=redis_url)
    assert submitted.returncode == 0 and submitted.stdout.strip() == "life"
    assert redis_server.client().llen("tier1") == 3  # 10 items in chunks of 4, no worker running
    status = json.loads(run_tango("status", "life", "--json", redis_url=redis_url).stdout)
    assert (status["state"], status["total"], status["done"], status["labels"]) == ("running", 10, 0, ["neg", "pos"])
    early = run_tango("results", "life", redis_url=redis_url)
    assert early.returncode == 2 and "--partial" in early.stderr
    assert run_tango("cancel", "life", redis_url=redis_url).stdout.strip() == "cancelled life"
    waited = run_tango("wait", "life", redis_url=redis_url)
    assert waited.returncode == 1 and "cancelled" in waited.stderr
    missing = run_tango("status", "nope", redis_url=redis_url)
    assert missing.returncode == 2 and "no job 'nope'" in missing.stderr


def test_a_worker_with_a_missing_model_exits_with_one_line(redis_url, tmp_path):
    done = run_tango("worker", "tier1", "--model", str(tmp_path / "nowhere"), redis_url=redis_url, timeout=120)
    assert done.returncode == 2 and "cannot load model" in done.stderr and "Traceback" not in done.stderr


def test_label_refuses_tiers_with_different_labels(tiny_models, corpus, tmp_path):
    from cli.main import cli, run

    code = run(cli, args=["label", str(corpus), "--small", str(tiny_models["small"]), "--big",
                          str(tiny_models["other_names"]), "-o", str(tmp_path / "out.jsonl")])
    assert code == 2 and not (tmp_path / "out.jsonl").exists()


def test_label_writes_csv_in_input_order(tiny_models, corpus, tmp_path):
    from cli.main import cli, run

    out = tmp_path / "out.csv"
    assert run(cli, args=["label", str(corpus), "--small", str(tiny_models["small"]), "--big",
                          str(tiny_models["big"]), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label,score,tier,model,error"
    assert [line.split(",")[0] for line in lines[1:]] == [f"x{i}" for i in range(10)]


def test_a_server_that_is_not_redis_is_one_line(tmp_path):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_http() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer_http, daemon=True).start()
    try:
        done = run_tango("jobs", redis_url=f"redis://:pw@127.0.0.1:{listener.getsockname()[1]}/0", timeout=60)
    finally:
        listener.close()
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "did not answer as a usable Redis" in done.stderr and "pw@" not in done.stderr


def test_over_long_texts_are_cut_and_counted_in_the_job(redis_url, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": "x" * 100_000}) + "\n" + json.dumps({"text": "short"}) + "\n")
    done = run_tango("submit", str(path), "--labels", "a,b", "--job-id", "long", redis_url=redis_url)
    assert done.returncode == 0 and "1 over-long texts cut" in done.stderr
    status = json.loads(run_tango("status", "long", "--json", redis_url=redis_url).stdout)
    assert (status["total"], status["truncated"]) == (2, 1)
