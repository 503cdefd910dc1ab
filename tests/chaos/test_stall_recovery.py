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
