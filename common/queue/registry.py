"""The worker registry: which model each live worker serves, kept by heartbeat.

``submit`` without ``--labels`` learns the job's label set from it. A worker killed by SIGKILL or
the OOM killer never withdraws itself, so an entry lives only as long as its last heartbeat says
(``lua.ADVERTISE``, on Redis's clock); a read drops the expired ones (``lua.LIVE_WORKERS``).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import redis

from common.queue.keys import workers_key

if TYPE_CHECKING:
    from redis.commands.core import Script


class WorkerRegistry:
    """The registry half of ``ResultStore`` (which supplies ``client`` and the scripts)."""

    client: redis.Redis
    _advertise: "Script"
    _live_workers: "Script"

    def advertise(self, tier: int, worker: str, info: dict, ttl: float) -> None:
        """Publish what a worker serves, so ``submit`` can learn the label set from it, for ``ttl``
        seconds: the worker's heartbeat calls this again well within them."""
        self._advertise(keys=[workers_key(tier)], args=[worker, json.dumps(info), ttl])

    def withdraw(self, tier: int, worker: str) -> None:
        self.client.hdel(workers_key(tier), worker)

    def advertised(self, tier: int) -> dict[str, dict]:
        """The workers of ``tier`` whose heartbeat is current; the others are dropped as they are found."""
        raw = self._live_workers(keys=[workers_key(tier)])
        return {name: json.loads(info) for name, info in zip(raw[::2], raw[1::2])}
