"""The one Celery app factory: every role (submitter, tier 1, tier 2) gets the same settings.

The settings are those long model work needs on a Redis broker: JSON only (pickle on a queue is remote code execution), late acks with
requeue on a lost worker (at-least-once; the store makes it exactly-once in
effect), prefetch of one, and one visibility timeout everywhere. There is no
Celery result backend: results go to our own store (``common.queue.store``).
"""
from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Queue

from common.queue.config import ClusterSettings
from common.queue.messages import QUEUE_TIER1, QUEUE_TIER2, TASK_TIER1, TASK_TIER2, Chunk
from common.queue.keys import JOB_HEADER

ROLES = ("client", "tier1", "tier2")
TRANSPORT = "common.queue.transport:Transport"
PROCESS_START_TIMEOUT = 600.0  # seconds a pool process may take to load its model


def make_app(role: str, settings: ClusterSettings) -> Celery:
    """A Celery app for ``role``; nothing connects until the app is used."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    app = Celery(f"tango-{role}", broker=settings.redis_url, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def send_chunk(app: Celery, task: str, chunk: Chunk, producer: Any = None) -> None:
    """Publish one chunk as the task's only argument.

    The message's ``argsrepr`` header (what monitors and logs show) is the chunk's
    one-line description: Celery's default walks the whole payload through
    ``saferepr``, which cost more than encoding the chunk (a fifth of submit's CPU). The job travels in a
    header too, which is all the broker's counts read of a message (``common.queue.transport``)."""
    app.send_task(task, args=[chunk.encode()], argsrepr=chunk.describe(), kwargsrepr="{}", producer=producer,
                  headers={JOB_HEADER: chunk.job})


def celery_config(settings: ClusterSettings) -> dict[str, Any]:
    """The settings as a plain dict (tests assert on it)."""
    timeout = settings.visibility_timeout
    transport = {
        "visibility_timeout": timeout,
        # Sweep for unacknowledged tasks of dead workers often enough that a
        # short (test) timeout actually brings them back soon after it expires.
        "unacked_restore_interval": max(1, min(10, int(timeout // 2))),
        "unacked_restore_throttle": 1 if timeout < 100 else 10,
        # A worker killed during that sweep leaves its lock behind, and no worker sweeps until it
        # expires (kombu's default: 300 s); it must not hold redelivery back for much longer than
        # the visibility timeout itself.
        "unacked_mutex_expire": int(min(300, max(2, timeout))),
        "socket_connect_timeout": settings.connect_timeout,
    }
    config: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,  # failures are recorded by the task itself
        "task_ignore_result": True,
        "result_backend": None,
        "task_send_sent_event": False,
        "worker_prefetch_multiplier": 1,
        # a prefork child loads its model before it reports up; Celery's 4 s default would kill and
        # replace every child whose model takes longer to load, forever
        "worker_proc_alive_timeout": PROCESS_START_TIMEOUT,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_send_task_events": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.connect_timeout,
        "broker_transport_options": transport,
        "visibility_timeout": timeout,
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                                      "interval_max": 1.0},
        "task_queues": [Queue(QUEUE_TIER1), Queue(QUEUE_TIER2)],
        "task_default_queue": QUEUE_TIER1,
        "task_routes": {TASK_TIER1: {"queue": QUEUE_TIER1}, TASK_TIER2: {"queue": QUEUE_TIER2}},
    }
    if settings.redis_url.startswith(("redis://", "rediss://")):
        # a consume that records a message as unacknowledged in the same step that takes it
        config["broker_transport"] = TRANSPORT
    if settings.redis_url.startswith("rediss://"):
        # without it kombu skips certificate checks with only a warning
        config["broker_use_ssl"] = tls_options(settings.redis_url)
    return config


def tls_options(url: str) -> dict[str, Any]:
    """Certificates and host names are always checked (whatever the URL's query says: kombu would take
    its ``ssl_cert_reqs=none``); a private CA or client certificate comes from the URL's query
    (``?ssl_ca_certs=PATH&ssl_certfile=...&ssl_keyfile=...``), as redis-py reads it too."""
    query = parse_qs(urlsplit(url).query)
    files = {name: query[name][-1] for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if name in query}
    return {**files, "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
