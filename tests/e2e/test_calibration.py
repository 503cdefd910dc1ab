"""A job with a quality target in a real cluster (redis-server, Celery workers): its seeded sample goes through
both tiers, its threshold is certified on the triples once, the rest flows at it; the threshold is the one the
offline ``certify`` picks on the same triples and the one `tango label --seed JOB` picks on the same corpus, and a
submit killed mid-calibration leaves the workers' sweep to finish the calibration and the job."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import numpy as np
import torch

from common.guarantee import QualityTarget, certify_target
from common.queue.keys import calibration_key, meta_key
from common.revision import model_revision
from common.sampling import calibration_sample
from common.testing.chaos import drained, until
from common.testing.cluster import (ROOT, cluster_env, run_tango, start_celery_worker, start_redis, stop_cluster,
                                    tango_argv, wait_ready)

LABELS = ["negative", "positive"]
ITEMS = 600
TARGET = ["--max-disagreement", "0.2"]


def write_corpus(glue_dir, path):
    rows = [line.split("\t") for line in (glue_dir / "sst2" / "dev.tsv").read_text().splitlines()[1:ITEMS + 1]]
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": text, "label": LABELS[int(gold)]}) + "\n"
                            for i, (text, gold) in enumerate(rows)))
    return path


def models(tiny_models) -> list[str]:
    return ["--small", str(tiny_models["small"]), "--big", str(tiny_models["big"])]


def offline_threshold(client, job: str) -> float:
    """``certify_target`` on the triples the cluster stored, in sample order."""
    total = int(client.hget(meta_key(job), "total"))
    calibration = json.loads(client.hget(meta_key(job), "calibration"))
    stored = client.hgetall(calibration_key(job))
    sample = calibration_sample(total, calibration["size"], job)
    assert sorted(map(int, stored)) == sample.tolist()  # the triples are exactly the seeded sample's
    rows = [stored[str(i)].split("\t") for i in sample]
    guarantee = certify_target(np.array([float(r[0]) for r in rows]), np.array([LABELS.index(r[1]) for r in rows]),
                               np.array([LABELS.index(r[2]) for r in rows]), total, QualityTarget(0.2), 2)
    return guarantee.threshold


def labelled_threshold(tiny_models, corpus, job: str, out) -> tuple[str, list[dict]]:
    """What `tango label --seed JOB` certifies (as it prints it: 10 significant digits) and writes, with the
    workers' one torch thread."""
    threads = torch.get_num_threads()
    done = subprocess.run(tango_argv("label", str(corpus), *models(tiny_models), *TARGET, "--seed", job, "--threads",
                                     "1", "-o", str(out)), cwd=ROOT, env=cluster_env(), capture_output=True, text=True,
                          timeout=300)
    torch.set_num_threads(threads)
    assert done.returncode == 0, done.stderr
    threshold = re.search(r"^threshold ([0-9.e-]+):", done.stderr, re.M).group(1)
    return threshold, [json.loads(line) for line in out.read_text().splitlines()]


def results(job: str, url: str, out) -> list[dict]:
    done = run_tango("results", job, "-o", str(out), redis_url=url)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_job_calibrates_on_its_sample_and_agrees_with_label_and_offline_certify(tiny_models, glue_dir, tmp_path):
    corpus = write_corpus(glue_dir, tmp_path / "in.jsonl")
    server = start_redis(tmp_path)
    client = server.client()
    workers = []
    try:
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path)]
        wait_ready(workers)
        submitted = run_tango("submit", str(corpus), *models(tiny_models), *TARGET, "--job-id", "cal-1",
                              redis_url=server.url)
        assert submitted.returncode == 0, submitted.stderr
        assert run_tango("wait", "cal-1", redis_url=server.url).returncode == 0
        status = json.loads(run_tango("status", "cal-1", "--json", redis_url=server.url).stdout)
        text = run_tango("status", "cal-1", redis_url=server.url).stdout
        got = results("cal-1", server.url, tmp_path / "out.jsonl")
        sidecar = json.loads((tmp_path / "out.jsonl.provenance.json").read_text())
        offline = offline_threshold(client, "cal-1")
        until(lambda: drained(client), "the queues to drain")
    finally:
        stop_cluster(server, workers)
    quality = status["quality"]
    size = quality["sample_size"]
    assert quality["phase"] == "certified" and 0 < size < ITEMS and quality["sampled"] == size
    guarantee = quality["guarantee"]
    assert guarantee["threshold"] == offline == status["threshold"] and offline < 1.0
    assert guarantee["bound"] <= 0.2 and quality["audit"]["audited"] >= 0
    assert "quality   disagreement at most 0.2 at 90% confidence, sample of" in text and "promise   " in text
    said = submitted.stderr.splitlines()  # the sample's cost before the wait for it, then what it bought
    assert [line.split(":")[1].split(",")[0] for line in said if line.startswith("quality")] == [
        " calibrating", f" threshold {offline:.10g}"]
    assert sidecar["threshold"] == offline and sidecar["target"]["max_loss"] == 0.2
    assert sidecar["calibration_sample"] == size and sidecar["models"]["big"] == str(tiny_models["big"])
    assert sidecar["revisions"] == {tier: model_revision(str(tiny_models[tier])) for tier in ("small", "big")}
    assert sidecar["revisions"]["big"].startswith("sha256:")
    sample = calibration_sample(ITEMS, size, "cal-1")
    assert all(got[i]["tier"] == 2 for i in sample)
    threshold, labelled = labelled_threshold(tiny_models, corpus, "cal-1", tmp_path / "label.jsonl")
    assert threshold == f"{offline:.10g}"
    assert [(r["id"], r["label"], r["tier"]) for r in got] == [(r["id"], r["label"], r["tier"]) for r in labelled]


def test_a_submit_killed_mid_calibration_is_finished_by_the_sweep(tiny_models, glue_dir, tmp_path):
    corpus = write_corpus(glue_dir, tmp_path / "in.jsonl")
    server = start_redis(tmp_path)
    client = server.client()
    submit = subprocess.Popen(tango_argv("submit", str(corpus), *models(tiny_models), *TARGET, "--job-id", "cut",
                                         "--window", "100"),
                              cwd=ROOT, env=cluster_env(server.url, TANGO_FEEDER_LEASE="2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers = []
    try:  # no worker is up: the submit queues the sample and waits for its answers
        until(lambda: client.hget(meta_key("cut"), "phase") == "calibrating"
              and int(client.hget(meta_key("cut"), "fed") or 0) > 0, "the sample to be queued", 120)
        os.killpg(submit.pid, signal.SIGKILL)
        submit.wait(30)
        env = {"TANGO_SWEEP_INTERVAL": "2"}
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        until(lambda: client.hget(meta_key("cut"), "state") == "done", "the sweep to finish the job", 240)
        meta = client.hgetall(meta_key("cut"))
        offline = offline_threshold(client, "cut")
        got = results("cut", server.url, tmp_path / "out.jsonl")
        logs = "".join(worker.log_text() for worker in workers)
    finally:
        stop_cluster(server, workers, submit)
    assert (meta["phase"], meta["done"], meta["failed"]) == ("certified", str(ITEMS), "0")
    assert float(meta["threshold"]) == offline == json.loads(meta["guarantee"])["threshold"]
    assert int(meta["resumed"]) == ITEMS - json.loads(meta["calibration"])["size"]  # the sweep fed the rest
    assert "job 'cut' lost its submit" in logs
    threshold, labelled = labelled_threshold(tiny_models, corpus, "cut", tmp_path / "label.jsonl")
    assert threshold == f"{offline:.10g}"
    assert [(r["label"], r["tier"]) for r in got] == [(r["label"], r["tier"]) for r in labelled]


def test_a_redis_restart_with_aof_mid_calibration_loses_neither_the_sample_nor_the_threshold(tiny_models, glue_dir,
                                                                                           tmp_path):
    """Redis is killed while the sample waits for workers; with an append-only file the job's record and its
    queued sample survive, the waiting submit rides the restart out, and once workers come the job ends
    certified at the threshold its stored triples give."""
    corpus = write_corpus(glue_dir, tmp_path / "in.jsonl")
    server = start_redis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    client = server.client()
    submit = subprocess.Popen(tango_argv("submit", str(corpus), *models(tiny_models), *TARGET, "--job-id", "aof"),
                              cwd=ROOT, env=cluster_env(server.url, TANGO_FEEDER_LEASE="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers = []
    try:
        until(lambda: client.hget(meta_key("aof"), "phase") == "calibrating"
              and int(client.hget(meta_key("aof"), "fed") or 0) > 0, "the sample to be queued", 120)
        server.crash()
        server.restart()
        client = server.client()
        assert client.hget(meta_key("aof"), "phase") == "calibrating" and client.llen("tier1") > 0
        env = {"TANGO_SWEEP_INTERVAL": "2"}
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        out, err = submit.communicate(timeout=300)
        until(lambda: client.hget(meta_key("aof"), "state") == "done", "the job to finish", 240)
        meta = client.hgetall(meta_key("aof"))
        offline = offline_threshold(client, "aof")
    finally:
        stop_cluster(server, workers, submit)
    assert submit.returncode == 0 and out.strip() == "aof", err
    assert (meta["phase"], meta["done"], meta["failed"]) == ("certified", str(ITEMS), "0")
    assert float(meta["threshold"]) == offline


def test_a_corpus_too_small_for_any_gain_runs_on_tier2_alone(tiny_models, glue_dir, tmp_path):
    """Its threshold is 1.0, where no tier-1 answer can stand: with no tier-1 worker up at all, the job still
    ends, every item answered by tier 2, as `tango label` answers it."""
    corpus = write_corpus(glue_dir, tmp_path / "in.jsonl")
    server = start_redis(tmp_path)
    workers = []
    try:
        workers = [start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path)]
        wait_ready(workers)
        submitted = run_tango("submit", str(corpus), *models(tiny_models), "--max-disagreement", "0.001",
                              "--job-id", "small", redis_url=server.url)
        assert submitted.returncode == 0, submitted.stderr
        assert "corpus too small for any gain" in submitted.stderr
        assert run_tango("wait", "small", "--timeout", "120", redis_url=server.url).returncode == 0
        got = results("small", server.url, tmp_path / "out.jsonl")
    finally:
        stop_cluster(server, workers)
    assert len(got) == ITEMS and {r["tier"] for r in got} == {2}
