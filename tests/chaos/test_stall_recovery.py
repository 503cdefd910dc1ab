"""A job whose last task vanished from the broker: the workers' own sweep finds it stalled and finishes
it, with no `tango wait --resume-stalled` (no CLI command at all) running anywhere."""
from __future__ import annotations

import json
import time

from common.queue.keys import meta_key
from common.queue.messages import QUEUE_TIER1
from common.testing.chaos import drained, until
from common.testing.cluster import run_tango, start_celery_worker, start_redis, wait_ready

ITEMS, CHUNK = 40, 10


def test_a_job_whose_last_task_was_deleted_is_finished_by_the_cluster(tiny_models, tmp_path):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"x{i}", "text": f"a plain review number {i}"}) + "\n"
                              for i in range(ITEMS)))
    server = start_redis(tmp_path)
    client = server.client()
    env = {"TANGO_VISIBILITY_TIMEOUT": "2", "TANGO_SWEEP_INTERVAL": "5"}
    workers = []
    try:
        assert run_tango("submit", str(corpus), "--job-id", "lost", "--chunk-size", str(CHUNK), "--labels",
                         "negative,positive", redis_url=server.url).returncode == 0
        assert client.lpop(QUEUE_TIER1)  # workers take from the right: this is the job's last task
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        until(lambda: int(client.hget(meta_key("lost"), "done") or 0) == ITEMS - CHUNK, "the other chunks")
        stalled_at = time.monotonic()
        until(lambda: client.hget(meta_key("lost"), "state") == "done", "the cluster to finish the job", 120)
        until(lambda: drained(client), "the queues to drain")
        meta = client.hgetall(meta_key("lost"))
        logs = "".join(worker.log_text() for worker in workers)
    finally:
        for worker in workers:
            worker.kill()
        server.stop()
    assert (meta["done"], meta["failed"], meta["resumed"]) == (str(ITEMS), "0", str(CHUNK))
    assert "job 'lost' was stalled at 30 of 40 items with nothing queued or in flight" in logs
    assert time.monotonic() - stalled_at < 60


def test_the_sweep_refuses_a_source_swapped_in_the_jobs_record_and_queues_nothing(tiny_models, tmp_path):
    """Whoever can write Redis names another file as a stalled job's source: every worker's sweep
    refuses it in one logged line and reads none of it into the queue."""
    corpus, secret = tmp_path / "in.jsonl", tmp_path / "secret.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"x{i}", "text": f"a plain review number {i}"}) + "\n"
                              for i in range(ITEMS)))
    secret.write_text("".join(json.dumps({"id": f"s{i}", "text": f"secret line {i}"}) + "\n" for i in range(ITEMS)))
    server = start_redis(tmp_path)
    client = server.client()
    env = {"TANGO_VISIBILITY_TIMEOUT": "2", "TANGO_SWEEP_INTERVAL": "3"}
    workers = []
    refusal = (f"job 'forged' is stalled at {ITEMS - CHUNK} of {ITEMS} items and cannot be resumed here: "
               f"job 'forged': {secret} is not the file it was submitted from")
    try:
        assert run_tango("submit", str(corpus), "--job-id", "forged", "--chunk-size", str(CHUNK), "--labels",
                         "negative,positive", redis_url=server.url).returncode == 0
        assert client.lpop(QUEUE_TIER1)  # the job's last task is lost, so the sweep will resume it
        client.hset(meta_key("forged"), "source", str(secret))
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        until(lambda: refusal in "".join(worker.log_text() for worker in workers), "the sweep's refusal", 120)
        meta = client.hgetall(meta_key("forged"))
        queued = client.llen(QUEUE_TIER1)
        logs = "".join(worker.log_text() for worker in workers)
    finally:
        for worker in workers:
            worker.kill()
        server.stop()
    assert (meta["state"], meta["done"], meta["failed"], int(meta.get("resumed") or 0)) == \
        ("running", str(ITEMS - CHUNK), "0", 0)
    assert queued == 0 and "secret line" not in logs and "unanswered items again" not in logs
    assert all(line.endswith("refusing to queue any of it") for line in logs.splitlines() if refusal in line)
