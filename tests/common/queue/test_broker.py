"""Queue depths as an autoscaler reads them: waiting on each list, held unacknowledged per queue."""
from __future__ import annotations

import json

import redis
from kombu import Connection, Exchange, Queue
from prometheus_client import generate_latest

from cli.main import cli, run
from common.queue.broker import QueueDepth, queue_depths
from common.queue.keys import JOB_HEADER
from common.queue.transport import Transport
from common.queue.telemetry import WorkerMetrics


def publish(conn: Connection, queue: str, job: str | None = "j") -> None:
    conn.Producer(serializer="json").publish({"n": 1}, exchange=Exchange(queue, type="direct"), routing_key=queue,
                                             headers={JOB_HEADER: job} if job else {},
                                             declare=[Queue(queue, Exchange(queue, type="direct"), queue)])


def take(conn: Connection, queue: str, count: int) -> list:
    got = []
    channel = conn.channel()
    channel.basic_consume(queue, no_ack=False, callback=got.append, consumer_tag=f"take-{queue}")
    while len(got) < count:
        conn.drain_events(timeout=5)
    channel.basic_cancel(f"take-{queue}")
    return got


def test_waiting_and_in_flight_are_counted_per_queue(redis_server, redis_url, capsys):
    with Connection(redis_url, transport=Transport) as conn:
        for queue, job in [("tier1", "j"), ("tier1", "j"), ("tier1", None), ("tier1", "k"), ("tier2", "j"),
                           ("tier2", "j"), ("tier2", "k")]:
            publish(conn, queue, job)
        held = take(conn, "tier1", 1) + take(conn, "tier2", 2)
        assert queue_depths(redis_server.client()) == [QueueDepth("tier1", 3, 1), QueueDepth("tier2", 1, 2)]
        assert run(cli, args=["queues", "--json", "--redis-url", redis_url]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines == [{"queue": "tier1", "waiting": 3, "in_flight": 1},
                         {"queue": "tier2", "waiting": 1, "in_flight": 2}]
        for message in held:
            message.ack()
    assert queue_depths(redis_server.client()) == [QueueDepth("tier1", 3, 0), QueueDepth("tier2", 1, 0)]


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
