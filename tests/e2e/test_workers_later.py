"""Queue first, workers later: a job submitted with no worker up and no --labels waits, then the first
worker to take it fixes its labels and the job completes, as Celery fleets that scale from zero run."""
from __future__ import annotations

import json
import time

from common.testing.cluster import run_tango, start_worker, wait_ready
from tests.e2e.jobs import read_jsonl


def test_a_job_submitted_before_any_worker_completes_once_they_start(redis_url, tiny_models, sentences, tmp_path):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text}) + "\n"
                              for i, (text, _) in enumerate(sentences[:60])))
    done = run_tango("submit", str(corpus), "--job-id", "early", "--threshold", "0.8", "--chunk-size", "16",
                     redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    assert "fixed by the first worker" in done.stderr
    status = run_tango("status", "early", redis_url=redis_url)
    assert "waiting for workers" in status.stdout, status.stdout
    queues = run_tango("queues", "--json", redis_url=redis_url)
    assert json.loads(queues.stdout.splitlines()[0]) == {"queue": "tier1", "waiting": 4, "in_flight": 0}
    workers = [start_worker(1, tiny_models["small"], redis_url, tmp_path, name="t1"),
               start_worker(2, tiny_models["big"], redis_url, tmp_path, name="t2")]
    try:
        wait_ready(workers)
        waited = run_tango("wait", "early", "--timeout", "120", redis_url=redis_url)
        assert waited.returncode == 0, waited.stderr
        report = json.loads(run_tango("status", "early", "--json", redis_url=redis_url).stdout)
        assert report["labels"] == ["negative", "positive"] and not report["waiting_for_workers"]
        assert (report["done"], report["failed"]) == (60, 0)
        fetched = run_tango("results", "early", "-o", str(tmp_path / "out.jsonl"), redis_url=redis_url)
        assert fetched.returncode == 0, fetched.stderr
        rows = read_jsonl(tmp_path / "out.jsonl")
        assert [row["id"] for row in rows] == [f"s{i}" for i in range(60)]
        assert {row["label"] for row in rows} <= {"negative", "positive"}
    finally:
        for worker in workers:
            worker.kill()


def test_a_sigkilled_worker_leaves_the_label_registry_by_itself(redis_url, tiny_models, tmp_path):
    """The registry is kept by heartbeats: a worker killed without a word (SIGKILL of its whole group, as
    the out-of-memory killer or a lost node would) drops out once its entry's time passes, so a later
    submit without --labels neither takes its label set nor refuses as "workers disagree"."""
    from common.queue.config import ClusterSettings
    from common.queue.store import ResultStore
    from common.testing.chaos import until

    store = ResultStore.open(ClusterSettings(redis_url=redis_url))
    ttl = {"TANGO_WORKER_TTL": "2"}
    dead = start_worker(1, tiny_models["other"], redis_url, tmp_path, name="other", env=ttl)
    live = start_worker(1, tiny_models["small"], redis_url, tmp_path, name="small", env=ttl)
    try:
        wait_ready([dead, live])
        assert sorted(tuple(w["labels"]) for w in store.advertised(1).values()) == \
            [("negative", "positive"), ("red", "green", "blue")]
        dead.kill()  # os.killpg(SIGKILL): no shutdown signal runs, nothing is withdrawn
        until(lambda: len(store.advertised(1)) == 1, "the killed worker's entry to lapse", 30)
        time.sleep(3)  # past the TTL: the live worker's heartbeat keeps it in
        assert [w["labels"] for w in store.advertised(1).values()] == [["negative", "positive"]]
        corpus = tmp_path / "in.jsonl"
        corpus.write_text("".join(json.dumps({"text": f"review {i}"}) + "\n" for i in range(4)))
        done = run_tango("submit", str(corpus), "--job-id", "after", redis_url=redis_url)
        assert done.returncode == 0, done.stderr
        assert store.status("after").labels == ["negative", "positive"]
    finally:
        dead.kill()
        live.kill()
