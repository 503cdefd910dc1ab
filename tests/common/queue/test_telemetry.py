"""Worker metrics: the counters a worker updates, and the Prometheus endpoint that serves them."""
from __future__ import annotations

import urllib.request

from common.queue.telemetry import WorkerMetrics
from common.testing.cluster import free_port
from tests.workers import TEXTS, chunk, new_job, runtime


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def test_the_endpoint_serves_the_counters():
    metrics = WorkerMetrics(1)
    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    metrics.batch(48, 0.02)
    metrics.chunk(decided=48, forwarded=16)
    metrics.failed(2)
    metrics.audited(agreed=3, disagreed=1)
    text = scrape(port)
    for line in ('tango_items_total{outcome="decided",tier="1"} 48.0',
                 'tango_items_total{outcome="forwarded",tier="1"} 16.0',
                 'tango_batches_total{tier="1"} 1.0',
                 'tango_batch_size_bucket{le="48.0",tier="1"} 1.0',
                 'tango_batch_size_bucket{le="32.0",tier="1"} 0.0',
                 'tango_inference_seconds_count{tier="1"} 1.0',
                 'tango_failures_total{tier="1"} 2.0',
                 "tango_tier2_fraction 0.25",
                 'tango_audit_items_total{outcome="agree"} 3.0',
                 'tango_audit_items_total{outcome="disagree"} 1.0'):
        assert line in text, line


def test_a_worker_counts_what_its_chunks_did(tiny_models, redis_url):
    rt = runtime(1, tiny_models["small"], redis_url)
    new_job(rt.store, "j1", threshold=0.9)
    summary = rt.run(chunk("j1", threshold=0.9))
    value = rt.metrics.registry.get_sample_value
    assert value("tango_items_total", {"tier": "1", "outcome": "decided"}) == summary["decided"]
    assert (value("tango_items_total", {"tier": "1", "outcome": "forwarded"}) or 0) == summary["forwarded"]
    assert value("tango_batch_size_sum", {"tier": "1"}) == len(TEXTS)
    assert value("tango_tier2_fraction") == summary["forwarded"] / len(TEXTS)


def test_a_failed_chunk_is_counted(tiny_models, redis_url):
    rt = runtime(2, tiny_models["other"], redis_url)  # three colours: cannot answer a sentiment job
    new_job(rt.store, "j1")
    rt.run(chunk("j1", tier=2))
    assert rt.metrics.registry.get_sample_value("tango_failures_total", {"tier": "2"}) == len(TEXTS)
