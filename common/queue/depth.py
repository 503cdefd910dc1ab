"""How much work each tier has: tasks waiting on its queue and tasks its workers hold.

This is what an autoscaler reads (KEDA's Redis list scaler reads the same list
length): waiting says "start workers", waiting plus in flight says "keep them".
Read straight from the broker's keys, so it needs no worker to answer.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from common.queue.keys import UNACKED
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
    """Both tiers' depths in one round trip plus one pass over the unacknowledged tasks."""
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(queue)
    pipe.hvals(UNACKED)
    *lengths, held = pipe.execute()
    in_flight = dict.fromkeys(QUEUES, 0)
    for raw in held:
        queue = _routing_key(raw)
        if queue in in_flight:
            in_flight[queue] += 1
    return [QueueDepth(queue, int(length), in_flight[queue]) for queue, length in zip(QUEUES, lengths)]


def _routing_key(raw: bytes | str) -> str | None:
    """The queue an unacknowledged task came from: kombu keeps ``[message, exchange, routing_key]``."""
    try:
        entry = json.loads(raw)
        return str(entry[2])
    except (ValueError, IndexError, TypeError):
        return None
