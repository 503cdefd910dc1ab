"""What the broker holds, read without consuming it: queue depths, each job's messages, and the chunks waiting.

Depths: how much work each tier has, and each job: tasks waiting on a queue, tasks workers hold.

This is what an autoscaler reads (KEDA's Redis list scaler reads the same list
length): waiting says "start workers", waiting plus in flight says "keep them".
Read straight from the broker's keys and from the counts the transport keeps
beside them (``common.queue.transport``), so it needs no worker to answer and
never reads a message body: a scrape costs the same with a thousand chunks held.
"""
from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Iterable

from common.queue.keys import HELD_BY_QUEUE, IN_BROKER
from common.queue.messages import QUEUE_TIER1, QUEUE_TIER2, Chunk
from common.queue.transport import settle_counts

QUEUES = (QUEUE_TIER1, QUEUE_TIER2)


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    waiting: int  # tasks on the list, not yet taken by any worker
    in_flight: int  # tasks a worker took and has not acknowledged

    def as_dict(self) -> dict:
        return asdict(self)


def queue_depths(client) -> list[QueueDepth]:
    """Both tiers' depths in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(queue)
    pipe.hmget(HELD_BY_QUEUE, list(QUEUES))
    *lengths, held = pipe.execute()
    return [QueueDepth(queue, int(length), max(0, int(count or 0)))
            for queue, length, count in zip(QUEUES, lengths, held)]


def in_broker(client, jobs: Iterable[str]) -> dict[str, int]:
    """How many messages of each job are queued or held by a worker (one round trip)."""
    jobs = list(jobs)
    counts = client.hmget(IN_BROKER, jobs) if jobs else []
    return {job: max(0, int(count or 0)) for job, count in zip(jobs, counts)}


def settled_in_broker(client, jobs: Iterable[str]) -> dict[str, int]:
    """``in_broker`` after the counts are reset where an empty broker makes them known: a message deleted
    behind the broker's back then no longer holds its job's count up (``transport.settle_counts``)."""
    settle_counts(client, list(QUEUES))
    return in_broker(client, jobs)


def queued_payloads(client, queue: str) -> list[dict]:
    """The chunk payloads waiting on a queue, read from kombu's Redis list as stored (newest first;
    workers pop from the other end). For inspection (tests, benchmarks): nothing is consumed."""
    return [envelope_payload(json.loads(raw)) for raw in client.lrange(queue, 0, -1)]


def queued_chunks(client, queue: str) -> list[Chunk]:
    """The chunks waiting on a queue, decoded, in the order workers take them. For inspection."""
    return [Chunk.decode(payload) for payload in reversed(queued_payloads(client, queue))]


def envelope_payload(envelope: dict) -> dict:
    """The chunk payload inside one of kombu's message envelopes."""
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, _, _ = json.loads(body)
    return args[0]
