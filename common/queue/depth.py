"""How much work each tier has, and each job: tasks waiting on a queue, tasks workers hold.

This is what an autoscaler reads (KEDA's Redis list scaler reads the same list
length): waiting says "start workers", waiting plus in flight says "keep them".
Read straight from the broker's keys and from the counts the transport keeps
beside them (``common.queue.transport``), so it needs no worker to answer and
never reads a message body: a scrape costs the same with a thousand chunks held.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from common.queue.keys import HELD_BY_QUEUE, IN_BROKER
from common.queue.messages import QUEUE_TIER1, QUEUE_TIER2

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
