"""A whole worker killed while it held a task comes back through kombu's sweep of unacknowledged
messages, even when the worker died inside that sweep and left its lock behind."""
from __future__ import annotations

import json
import time

from common.queue.celery_app import celery_config
from common.queue.config import ClusterSettings
from common.queue.keys import UNACKED, meta_key
from common.queue.messages import QUEUE_TIER1
from common.testing.chaos import until, write_corpus
from common.testing.cluster import run_tango, start_celery_worker, start_redis, wait_ready

ITEMS, CHUNK, TIMEOUT = 20, 10, 2.0


def hold_as_a_dead_worker(client) -> None:
    """Move the job's next task into kombu's unacked records as a worker that popped it long ago and
    was then SIGKILLed in the middle of a restore sweep (holding the sweep's lock, as kombu takes it)."""
    raw = client.rpop(QUEUE_TIER1)
    message = json.loads(raw)
    tag, info = message["properties"]["delivery_tag"], message["properties"]["delivery_info"]
    client.hset(UNACKED, tag, json.dumps([message, info["exchange"], info["routing_key"]]))
    client.zadd(f"{UNACKED}_index", {tag: time.time() - 10 * TIMEOUT})
    transport = celery_config(ClusterSettings(redis_url="redis://unused", visibility_timeout=TIMEOUT))
    expire = transport["broker_transport_options"].get("unacked_mutex_expire", 300)  # kombu's own default
    assert client.lock("unacked_mutex", timeout=expire).acquire(blocking=False)


def test_a_task_held_by_a_worker_killed_in_its_restore_sweep_comes_back_within_seconds(tiny_models, tmp_path):
    corpus = tmp_path / "in.jsonl"
    write_corpus(corpus, ["a plain review"], ITEMS)
    server = start_redis(tmp_path)
    client = server.client()
    workers = []
    try:
        assert run_tango("submit", str(corpus), "--job-id", "held", "--chunk-size", str(CHUNK), "--labels",
                         "negative,positive", redis_url=server.url).returncode == 0
        hold_as_a_dead_worker(client)
        env = {"TANGO_VISIBILITY_TIMEOUT": repr(TIMEOUT)}
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        started = time.monotonic()
        until(lambda: client.hget(meta_key("held"), "state") == "done", "the held task to come back", 120)
        waited = time.monotonic() - started
        meta = client.hgetall(meta_key("held"))
    finally:
        for worker in workers:
            worker.kill()
        server.stop()
    assert (meta["done"], meta["failed"], meta.get("resumed", "0")) == (str(ITEMS), "0", "0"), meta
    assert waited < 30, f"the held task came back after {waited:.0f} s"
