"""The cluster commands as a user runs them: real `tango` processes against a real redis-server."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from cli.cluster import format_status, status_dict
from common.queue.keys import meta_key
from common.queue.store import JobStatus
from common.queue.broker import queued_chunks
from common.sampling import audit_mask
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
    (["--chunk-size", "lots", "--labels", "a,b"], "'lots' is not a valid integer"),
    (["--chunk-size", "5000", "--labels", "a,b"], "--chunk-size"),
    (["--chunk-size", "100", "--window", "50", "--labels", "a,b"], "at least the chunk size 100, got 50"),
    (["--audit", "1.5", "--labels", "a,b"], "--audit must be between 0 and 1"),
    (["--audit", "-0.1", "--labels", "a,b"], "--audit must be between 0 and 1"),
    (["--threshold", "0"], "--threshold must be between"),
])
def test_submit_refuses_bad_options_before_enqueueing(redis_server, redis_url, corpus, args, message):
    done = run_tango("submit", str(corpus), *args, redis_url=redis_url)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert redis_server.client().llen("tier1") == 0


@pytest.mark.parametrize("items, args, size, chunks", [
    (5000, [], 313, 16),  # auto: 16 tasks for the workers to share
    (600, [], 256, 3),  # auto: never below 256 items a task
    (5000, ["--chunk-size", "auto", "--window", "0"], 313, 16),
    (2000, ["--chunk-size", "300"], 300, 7),
])
def test_the_chunk_size_is_picked_for_the_job_unless_given(redis_server, redis_url, tmp_path, items, args, size,
                                                           chunks):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"text": f"item {i}"}) + "\n" for i in range(items)))
    done = run_tango("submit", str(path), "--labels", "neg,pos", "--job-id", "cs", *args, redis_url=redis_url)
    assert done.returncode == 0 and f"submitted {items} items in {chunks} chunks" in done.stderr, done.stderr
    sizes = [len(chunk.items) for chunk in queued_chunks(redis_server.client(), "tier1")]
    assert sizes == [size] * (chunks - 1) + [items - size * (chunks - 1)]
    assert redis_server.client().hget(meta_key("cs"), "chunk_size") == str(size)


@pytest.mark.slow
@pytest.mark.parametrize("args, rate", [([], 0.02), (["--audit", "0.25"], 0.25), (["--audit", "0"], 0.0)])
def test_the_audit_rate_is_recorded_in_the_job_and_every_chunk(redis_server, redis_url, corpus, args, rate):
    done = run_tango("submit", str(corpus), "--labels", "neg,pos", "--job-id", "aud", "--chunk-size", "4", *args,
                     redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    chunks = queued_chunks(redis_server.client(), "tier1")
    assert len(chunks) == 3 and [chunk.audit for chunk in chunks] == [rate] * 3
    status = json.loads(run_tango("status", "aud", "--json", redis_url=redis_url).stdout)
    assert (status["audit"]["rate"], status["audit"]["audited"], status["audit"]["accepted_agreement"]) == \
        (rate, 0, None)


def job_status(tier1: int, tier2: int, audited: int, agreed: int, rate: float = 0.02, job: str = "j") -> JobStatus:
    return JobStatus(job=job, state="done", total=tier1 + tier2, labels=["neg", "pos"], threshold=0.9, created=0.0,
                     finished=1.0, done=tier1 + tier2, tier1=tier1, tier2=tier2, audit=rate, audited=audited,
                     audit_agreed=agreed)


def test_status_shows_the_tier2_load_and_the_agreement_with_intervals():
    text = format_status(job_status(tier1=786, tier2=214, audited=20, agreed=19))
    assert "tier-2 load 23.4% (21.4% escalated + 2.0% audited)" in text
    assert "tier 2 checked 20 of 786 accepted items, agreed on 19" in text
    figures = status_dict(job_status(tier1=786, tier2=214, audited=20, agreed=19))["audit"]
    assert figures["accepted_agreement"] == 0.95 and figures["accepted_low"] < 0.95 < figures["accepted_high"]
    assert figures["job_agreement"] == (214 + 786 * 0.95) / 1000 and figures["audited_share"] == 0.02
    assert f"accepted items 0.9500 [{figures['accepted_low']:.4f}, {figures['accepted_high']:.4f}]" in text
    assert "audit     off" in format_status(job_status(786, 214, 0, 0, rate=0.0))


def test_status_tells_a_submit_still_feeding_from_one_that_is_gone():
    feeding = dataclasses.replace(job_status(30, 10, 0, 0), state="submitting", total=100, fed=50, feeder=True)
    assert "(50 of 100 items queued so far: the submit queues the rest as workers answer)" in format_status(feeding)
    assert status_dict(feeding)["submit_lost"] is False
    gone = dataclasses.replace(feeding, feeder=False)
    assert "(50 of 100 items queued, and its submit is gone: `tango resume j` queues the rest" in format_status(gone)
    assert status_dict(gone)["submit_lost"] is True
    assert status_dict(dataclasses.replace(gone, state="running"))["submit_lost"] is False


def test_the_status_interval_covers_the_true_agreement_across_seeds():
    """Tier 2's answers fixed, the seeded sample redrawn per job id: the reported 95% intervals,
    computed from the job's counters as `status` computes them, cover the truth about that often."""
    accepted, escalated, rate, seeds = 2000, 500, 0.05, 400
    agrees = np.random.default_rng(7).random(accepted) < 0.9
    truth, job_truth = agrees.mean(), (escalated + agrees.sum()) / (accepted + escalated)
    covered, job_covered, widths = 0, 0, []
    for seed in range(seeds):
        mask = audit_mask(f"job-{seed}", np.arange(accepted), rate)
        figures = status_dict(job_status(accepted, escalated, int(mask.sum()), int(agrees[mask].sum()), rate))["audit"]
        covered += figures["accepted_low"] <= truth <= figures["accepted_high"]
        job_covered += figures["job_low"] <= job_truth <= figures["job_high"]
        widths.append(figures["accepted_high"] - figures["accepted_low"])
    assert covered / seeds >= 0.93 and job_covered / seeds >= 0.93
    assert np.mean(widths) < 0.2, "an interval that always covers by being wide says nothing"


@pytest.mark.slow
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
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"tango: error: model directory {tmp_path / 'nowhere'} does not exist"


def test_label_refuses_tiers_with_different_labels(tiny_models, corpus, tmp_path):
    from cli.main import cli, run

    code = run(cli, args=["label", str(corpus), "--small", str(tiny_models["small"]), "--big",
                          str(tiny_models["other_names"]), "-o", str(tmp_path / "out.jsonl")])
    assert code == 2 and not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_label_audits_the_same_sample_and_keeps_its_output(tiny_models, corpus, tmp_path):
    from cli.main import cli, run
    from common.ml.models import load_tier

    plain, audited = tmp_path / "plain.jsonl", tmp_path / "audited.jsonl"
    base = ["label", str(corpus), "--small", str(tiny_models["small"]), "--big", str(tiny_models["big"]),
            "--threshold", "0.55", "--threads", "1"]  # one thread on both sides: float sums follow the count
    assert run(cli, args=[*base, "--audit", "0", "-o", str(plain)]) == 0
    done = subprocess.run([sys.executable, "-m", "cli.main", *base, "--audit", "0.5", "--seed", "job-7", "-o",
                           str(audited)], cwd=ROOT, env=cluster_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert audited.read_bytes() == plain.read_bytes()
    records = [json.loads(line) for line in plain.read_text().splitlines()]
    accepted = np.array([i for i, r in enumerate(records) if r["tier"] == 1])
    picked = accepted[audit_mask("job-7", accepted, 0.5)]
    assert 0 < len(picked) < len(accepted)
    texts = [f"item number {i}" for i in picked]
    big = load_tier(str(tiny_models["big"])).probabilities(texts).argmax(axis=1)
    agreed = sum(["negative", "positive"][k] == records[i]["label"] for k, i in zip(big, picked))
    assert f"tier 2 checked {len(picked)} of {len(accepted)} accepted items, agreed on {agreed}" in done.stderr
    assert "whole job" in done.stderr and "--seed job-7" in done.stderr
    refused = run_tango(*base, "--audit", "2", redis_url="redis://127.0.0.1:1/0")
    assert refused.returncode == 2 and "--audit must be between 0 and 1" in refused.stderr


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
