"""A job whose last task vanished from the broker: the workers' own sweep finds it stalled and finishes
it, with no `tango wait --resume-stalled` (no CLI command at all) running anywhere."""
from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import time
from datetime import datetime

from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.keys import meta_key
from common.queue.messages import QUEUE_TIER1
from common.testing.chaos import drained, until
from common.testing.cluster import (ROOT, cluster_env, run_tango, start_celery_worker, start_redis, stop_cluster,
                                    tango_argv, wait_ready)

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


def write_corpus(path, items: int, word: str = "review"):
    path.write_text("".join(json.dumps({"id": f"{word}{i}", "text": f"a plain {word} number {i}"}) + "\n"
                            for i in range(items)))
    return path


def feed_times(log: str) -> list[float]:
    """When each sweep fed the job (Celery's log stamps, in seconds)."""
    stamps = re.findall(r"\[(\d\d\d\d-\d\d-\d\d \d\d:\d\d:\d\d,\d+): WARNING/MainProcess\] job 'cut' lost its submit",
                        log)
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() for stamp in stamps]


def test_a_killed_submits_job_is_fed_at_every_sweep(tiny_models, tmp_path):
    """Not every other one: the sweep tops the window up whenever answers made room, though the job moved."""
    items, window, interval = 120, 20, 3.0
    corpus = write_corpus(tmp_path / "in.jsonl", items)
    server = start_redis(tmp_path)
    client = server.client()
    submit = subprocess.Popen(tango_argv("submit", str(corpus), "--job-id", "cut", "--chunk-size", "10", "--window",
                                         str(window), "--labels", "negative,positive"),
                              cwd=ROOT, env=cluster_env(server.url, TANGO_FEEDER_LEASE="2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers = []
    try:
        until(lambda: client.hget(meta_key("cut"), "fed") == str(window), "the submit to fill its window", 120)
        os.killpg(submit.pid, signal.SIGKILL)
        submit.wait(30)
        env = {"TANGO_SWEEP_INTERVAL": str(interval)}
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        until(lambda: client.hget(meta_key("cut"), "state") == "done", "the cluster to feed the job to its end", 180)
        meta = client.hgetall(meta_key("cut"))
        feeds = sorted(feed_times("".join(worker.log_text() for worker in workers)))
    finally:
        stop_cluster(server, workers, submit)
    assert (meta["done"], meta["failed"], meta["resumed"]) == (str(items), "0", str(items - window))
    gaps = [later - earlier for earlier, later in zip(feeds, feeds[1:])]
    assert len(feeds) >= (items - window) // window and gaps, feeds
    assert statistics.median(gaps) < 1.5 * interval, gaps  # fed at each sweep, not at every second one


def take_and_ack(url: str, count: int) -> None:
    """Take tasks off the tier-1 queue and acknowledge them unanswered, as a faulty worker would."""
    app = make_app("client", ClusterSettings(redis_url=url))
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(QUEUE_TIER1)
        for _ in range(count):
            queue.get(timeout=10).ack()
        queue.close()


def test_a_stalled_job_is_sent_again_while_another_job_keeps_the_queue_busy(tiny_models, tmp_path):
    server = start_redis(tmp_path)
    client = server.client()
    env = {"TANGO_SWEEP_INTERVAL": "2"}
    workers = []
    try:
        assert run_tango("submit", str(write_corpus(tmp_path / "a.jsonl", 20)), "--job-id", "stuck", "--chunk-size",
                         "10", "--labels", "negative,positive", redis_url=server.url).returncode == 0
        take_and_ack(server.url, 2)  # its tasks left the broker unanswered
        # long enough to outlast the two sweeps a stall takes, however fast the host: 6,000 tasks
        assert run_tango("submit", str(write_corpus(tmp_path / "b.jsonl", 12000, "busy")), "--job-id", "busy",
                         "--chunk-size", "2", "--window", "0", "--labels", "negative,positive",
                         redis_url=server.url).returncode == 0
        workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path, **env),
                   start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
        wait_ready(workers)
        seen = []  # the busy job's queue at the moment the stalled job is found resent

        def resent() -> bool:
            seen.append(client.llen(QUEUE_TIER1))
            return client.hget(meta_key("stuck"), "resumed") is not None

        until(resent, "the sweep to send the job again", 120)
        busy_queued = seen[-1]
        assert run_tango("cancel", "busy", redis_url=server.url).returncode == 0  # its rest is skipped, fast
        until(lambda: client.hget(meta_key("stuck"), "state") == "done", "the stalled job to finish", 300)
        meta = client.hgetall(meta_key("stuck"))
    finally:
        for worker in workers:
            worker.kill()
        server.stop()
    assert busy_queued > 0, "the other job's tasks must still have been queued when the stalled one was resent"
    assert (meta["done"], meta["failed"], meta["resumed"]) == ("20", "0", "20")
