"""Tier 2's cross-chunk batcher in a real cluster: redis-server, a tier-1 `celery worker` and a
`tango worker tier2 --max-wait-ms` process. Results equal embedded mode's per job, batches
really span chunks, and a warm shutdown runs what it holds instead of waiting for the timer."""
from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from common.queue.config import ClusterSettings
from common.queue.keys import UNACKED
from common.queue.store import ResultStore
from common.testing.cluster import (START_TIMEOUT, Process, free_port, start_celery_worker, start_redis, start_worker,
                                    wait_ready)
from common.testing.chaos import until
from tests.e2e.jobs import assert_drained, embedded, submit, wait_and_fetch

ITEMS = 640
CHUNK = 16
BATCH = 32  # above any chunk's forwarded items: one batch per chunk without the batcher


def batched_tier2(model: Path, redis_url: str, log_dir: Path, max_wait_ms: int, port: int) -> Process:
    """The real CLI: `tango worker tier2 --max-wait-ms` (threads pool, one model, 8 messages in hand)."""
    return start_worker(2, model, redis_url, log_dir, "--batch-size", str(BATCH), "--max-wait-ms", str(max_wait_ms),
                        "-c", "8", "--threads", "1", "--metrics-port", str(port), name=f"t2b{max_wait_ms}")


def write_corpus(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": text, "label": label}) + "\n"
                            for i, (text, label) in enumerate(rows[:ITEMS])), encoding="utf-8")
    return path


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.fixture()
def cluster(tmp_path, tiny_models):
    server = start_redis(tmp_path)
    workers: list[Process] = []
    yield server, workers
    for worker in workers:
        worker.kill()
    server.stop()


def test_batched_jobs_equal_embedded_mode_and_batches_span_chunks(cluster, tiny_models, sentences, tmp_path):
    server, workers = cluster
    port = free_port()
    workers += [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path),
                batched_tier2(tiny_models["big"], server.url, tmp_path, 50, port)]
    wait_ready(workers)
    corpus = write_corpus(tmp_path / "corpus.jsonl", sentences)
    jobs = {"strict": 0.95, "loose": 0.8}
    for job, threshold in jobs.items():  # both queued before either finishes: their items share batches
        # no audit: tier 2's model then runs exactly the forwarded items, which the figures below count
        submit(corpus, job, server.url, tiny_models, threshold, "--chunk-size", str(CHUNK), "--audit", "0")
    plain_batches = 0
    for job, threshold in jobs.items():
        expected = embedded(corpus, tmp_path / f"{job}-embedded.jsonl", tiny_models, threshold, "--chunk-size",
                            str(CHUNK))
        got = wait_and_fetch(job, server.url, tmp_path / f"{job}.jsonl")
        assert [(r["id"], r["label"], r["tier"]) for r in got] == [(r["id"], r["label"], r["tier"]) for r in expected]
        # other batch-mates pad differently: float sums differ in the last bits (~1e-5 on these wide-init models)
        assert np.allclose([r["score"] for r in got], [r["score"] for r in expected], rtol=0, atol=1e-4)
        plain_batches += len({n // CHUNK for n, r in enumerate(got) if r["tier"] == 2})
    forwarded = metric(port, "tango_items_total")
    batches, items = metric(port, "tango_batches_total"), metric(port, "tango_batch_size_sum")
    assert items == forwarded > 0
    assert batches < plain_batches / 2, "tier 2's batches should span chunks"
    assert_drained(ResultStore.open(ClusterSettings(redis_url=server.url)))


def test_a_warm_shutdown_runs_what_the_batcher_holds(cluster, tiny_models, sentences, tmp_path):
    """A batcher that would wait 10 minutes for a batch must not hold a stopping worker (or its
    messages) that long: SIGTERM drains it, every item is stored, every message acknowledged."""
    server, workers = cluster
    port = free_port()
    tier2 = batched_tier2(tiny_models["big"], server.url, tmp_path, 600_000, port)
    workers += [start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path), tier2]
    wait_ready(workers)
    corpus = write_corpus(tmp_path / "corpus.jsonl", sentences[:64])
    submit(corpus, "held", server.url, tiny_models, 0.95, "--chunk-size", str(CHUNK))
    store = ResultStore.open(ClusterSettings(redis_url=server.url))
    until(lambda: store.client.llen("tier1") == 0 and store.client.llen("tier2") == 0
          and store.client.hlen(UNACKED) > 0, "tier 2 holding its messages")
    assert store.status("held").state == "running"
    os.kill(tier2.popen.pid, signal.SIGTERM)  # the worker's main process: Celery's warm shutdown
    assert tier2.popen.wait(timeout=START_TIMEOUT) == 0
    status = store.status("held")
    assert (status.state, status.done, status.failed) == ("done", 64, 0)
    assert_drained(store)
