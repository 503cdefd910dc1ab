"""Queue depths as an autoscaler reads them: waiting on each list, held unacknowledged per queue."""
from __future__ import annotations

import json

import redis
from prometheus_client import generate_latest

from cli.main import cli, run
from common.queue.depth import QueueDepth, queue_depths
from common.queue.keys import UNACKED
from common.queue.telemetry import WorkerMetrics


def test_waiting_and_in_flight_are_counted_per_queue(redis_server, redis_url, capsys):
    client = redis_server.client()
    client.rpush("tier1", "a", "b", "c")
    client.rpush("tier2", "d")
    client.hset(UNACKED, mapping={"t1": json.dumps([{}, "", "tier1"]), "t2": json.dumps([{}, "", "tier2"]),
                                  "t3": json.dumps([{}, "", "tier2"]), "odd": "not json"})
    assert queue_depths(client) == [QueueDepth("tier1", 3, 1), QueueDepth("tier2", 1, 2)]
    assert run(cli, args=["queues", "--json", "--redis-url", redis_url]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"queue": "tier1", "waiting": 3, "in_flight": 1}, {"queue": "tier2", "waiting": 1, "in_flight": 2}]


def test_the_metrics_export_the_depths_and_survive_redis_being_away():
    metrics = WorkerMetrics(2)
    metrics.watch_queues(lambda: [QueueDepth("tier1", 5, 0), QueueDepth("tier2", 7, 2)])
    text = generate_latest(metrics.registry).decode()
    assert 'tango_queue_waiting{queue="tier2"} 7.0' in text and 'tango_queue_in_flight{queue="tier2"} 2.0' in text

    def away():
        raise redis.ConnectionError("gone")

    quiet = WorkerMetrics(1)
    quiet.watch_queues(away)
    assert "tango_queue_waiting" not in generate_latest(quiet.registry).decode()
