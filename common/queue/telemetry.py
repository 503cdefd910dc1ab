"""Prometheus metrics of one worker process: items, batches, batch sizes, model time, failures, audits.

The metrics live in the process that holds the model and are served from it
(``tango worker --metrics-port``), so one worker process is one scrape target.
Prefork workers with several children would need prometheus-client's
multiprocess mode; we keep one process per worker instead (``-c 1``, or the
threads pool that tier 2's batcher uses) and refuse the combination.
Each ``WorkerMetrics`` has its own registry, so tests can build several.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from common.queue.broker import QueueDepth

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """The counters a tier's worker updates; ``tier`` is a label so both tiers read alike."""

    def __init__(self, tier: int, registry: CollectorRegistry | None = None) -> None:
        self.tier = str(tier)
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.items = Counter("tango_items", "Items this worker decided (stored) or sent on to tier 2",
                             ["tier", "outcome"], registry=r)
        self.batches = Counter("tango_batches", "Model batches run", ["tier"], registry=r)
        self.batch_size = Histogram("tango_batch_size", "Items per model batch", ["tier"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("tango_inference_seconds", "Seconds per model batch (tokenize + forward)",
                                   ["tier"], buckets=SECONDS_BUCKETS, registry=r)
        self.failures = Counter("tango_failures", "Items recorded as failed (model error, label mismatch)",
                                ["tier"], registry=r)
        self.audit_items = Counter("tango_audit_items", "Tier-1 answers this tier-2 worker checked, by whether "
                                   "it agreed", ["outcome"], registry=r)
        self.resumed_items = Counter("tango_stall_resumed_items", "Items of stalled jobs this worker's sweep "
                                     "sent again", registry=r)
        self.tier2_fraction = Gauge("tango_tier2_fraction", "Share of tier-1 items sent on to tier 2 so far",
                                    registry=r)
        self._seen = 0
        self._forwarded = 0

    def batch(self, size: int, seconds: float) -> None:
        """One model forward pass (``TierModel.on_batch``)."""
        self.batches.labels(self.tier).inc()
        self.batch_size.labels(self.tier).observe(size)
        self.inference.labels(self.tier).observe(seconds)

    def chunk(self, decided: int, forwarded: int) -> None:
        """One chunk's outcome; tier 1 also updates the running tier-2 fraction."""
        self.items.labels(self.tier, "decided").inc(decided)
        if forwarded:
            self.items.labels(self.tier, "forwarded").inc(forwarded)
        if self.tier == "1":
            self._seen += decided + forwarded
            self._forwarded += forwarded
            self.tier2_fraction.set(self._forwarded / self._seen if self._seen else 0.0)

    def audited(self, agreed: int, disagreed: int) -> None:
        """Tier 2's checks of one chunk's audit items (``ChunkProcessor`` calls it only when there are some)."""
        self.audit_items.labels("agree").inc(agreed)
        self.audit_items.labels("disagree").inc(disagreed)

    def resumed(self, items: int) -> None:
        """A sweep found a stalled job and sent its unanswered items again."""
        self.resumed_items.inc(items)

    def failed(self, count: int) -> None:
        self.failures.labels(self.tier).inc(count)

    def watch_queues(self, read: Callable[[], list[QueueDepth]]) -> None:
        """Export both tiers' queue depths as gauges, read from Redis at each scrape."""
        self.registry.register(_QueueCollector(read))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``port`` from a daemon thread of this process."""
        start_http_server(port, addr=addr, registry=self.registry)
        log.info("tier %s metrics on http://%s:%d/metrics", self.tier, addr, port)


class _QueueCollector:
    """``tango_queue_waiting`` and ``tango_queue_in_flight`` per queue, what an autoscaler scales on."""

    def __init__(self, read: Callable[[], list[QueueDepth]]) -> None:
        self.read = read

    def describe(self) -> list:
        return []  # read lazily: registering must not reach Redis

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths = self.read()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("queue depths unavailable: %s", exc)
            return
        waiting = GaugeMetricFamily("tango_queue_waiting", "Tasks waiting on the queue", labels=["queue"])
        in_flight = GaugeMetricFamily("tango_queue_in_flight", "Tasks taken from the queue and not yet "
                                      "acknowledged", labels=["queue"])
        for depth in depths:
            waiting.add_metric([depth.queue], depth.waiting)
            in_flight.add_metric([depth.queue], depth.in_flight)
        yield waiting
        yield in_flight
