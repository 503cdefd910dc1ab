"""The Redis result store: one object over a job's records, chunk attempts, results and the registry.

Each concern lives in a module of its own (``jobs``, ``attempts``, ``answers``, ``registry``) as a
part of ``ResultStore``; their Lua is in ``lua``. Every method is safe to repeat: delivery is
at-least-once, so every write that must happen once is one Lua script that checks before it writes.
"""
from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.errors import ServiceUnavailable, first_line
from common.queue import lua
from common.queue.answers import READ_BLOCK, Answered, ResultTable, export_start
from common.queue.attempts import ChunkAttempts
from common.queue.config import DEFAULT_FEEDER_LEASE, ClusterSettings
from common.queue.jobs import ACTIVE_STATES, FINAL_STATES, JobRecords, JobSpec, JobStatus
from common.queue.registry import WorkerRegistry

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "READ_BLOCK", "Answered", "JobSpec", "JobStatus", "ResultStore", "connect",
           "export_start"]

# attribute -> script: what each part of the store calls
SCRIPTS = {"_write": lua.WRITE, "_transition": lua.TRANSITION, "_begin": lua.BEGIN, "_refund": lua.REFUND,
           "_audit": lua.AUDIT, "_claim_labels": lua.CLAIM_LABELS, "_frontier": lua.FRONTIER, "_drain": lua.DRAIN,
           "_fed": lua.FED, "_advertise": lua.ADVERTISE, "_live_workers": lua.LIVE_WORKERS}


def connect(settings: ClusterSettings, retries: int = 0) -> redis.Redis:
    """A client that gives up on an unreachable Redis within ``connect_timeout`` per try.

    Workers pass ``retries`` so a Redis restart mid-job is ridden out; the CLI
    keeps the default so that a wrong URL fails at once.
    """
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    # TLS always checks the certificate and the host name (``ClusterSettings`` refuses a URL that turns them off)
    tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True} if settings.redis_url.startswith("rediss:") else {}
    return redis.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_connect_timeout=settings.connect_timeout,
        socket_timeout=max(settings.connect_timeout * 5, 10.0), retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], health_check_interval=30, **tls)


class ResultStore(JobRecords, ChunkAttempts, ResultTable, WorkerRegistry):
    """Job records and results in Redis; every method is safe to repeat."""

    def __init__(self, client: redis.Redis, url: str = "redis", feeder_lease: float = DEFAULT_FEEDER_LEASE) -> None:
        self.client = client
        self.url = url
        self.feeder_lease = feeder_lease
        self._lease_ms = max(1, int(feeder_lease * 1000))
        for name, script in SCRIPTS.items():
            setattr(self, name, client.register_script(script))

    @classmethod
    def open(cls, settings: ClusterSettings, retries: int = 0) -> "ResultStore":
        store = cls(connect(settings, retries), settings.masked_url, settings.feeder_lease)
        store.ping()
        return store

    def ping(self) -> None:
        """Fail with one line naming the (masked) URL when Redis cannot be reached."""
        try:
            self.client.ping()
        except redis.AuthenticationError as exc:
            raise ServiceUnavailable(f"Redis at {self.url} refused the credentials: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ServiceUnavailable(f"cannot reach Redis at {self.url}: {first_line(exc)}") from None
        except redis.RedisError as exc:  # something answered, but not a Redis we can use
            raise ServiceUnavailable(f"{self.url} did not answer as a usable Redis: {first_line(exc)}") from None
