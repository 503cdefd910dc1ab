"""A tier's Celery app and the lifecycle of the worker processes that serve it.

A worker process loads its model once, after the fork (``worker_process_init``
for prefork; on first use for the solo and threads pools, which GPU workers
use because forked processes and CUDA do not mix). The parent imports the
model's code first (the app's ``preload``), so a pool process, and one that
replaces a process that died, only reads weights. The model comes from the
``loader`` the tier's app names, so this module never imports torch. Each task
decodes its message and hands the chunk to the process's ``ChunkProcessor``;
what can go wrong around it is mapped here: Redis away gives the task back,
a job that is gone drops it, a bug records the chunk's items as failed.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable

import redis
from celery import Celery, signals
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from common.errors import JobError, MessageError, TangoError, first_line
from common.labels import model_labels
from common.queue.celery_app import make_app, send_chunk
from common.queue.chunks import ChunkProcessor
from common.queue.config import ENV_MODEL, ClusterSettings, WorkerSettings
from common.queue.decisions import Decide
from common.queue.faults import Scorer, shut_down_worker
from common.queue.messages import TASKS, Chunk
from common.queue.store import ResultStore
from common.queue.sweeper import StallSweeper
from common.queue.broker import queue_depths
from common.queue.telemetry import WorkerMetrics

log = logging.getLogger(__name__)

STORE_RETRIES = 8  # ~15 s of backoff: rides out a Redis restart before giving the task back

Loader = Callable[[WorkerSettings], Any]  # a model with ``probabilities``, ``labels``, ``device``, ``on_batch``
Preload = Callable[[WorkerSettings], None]  # what the parent imports before forking, so each child loads faster
Batching = Callable[[WorkerSettings, Scorer], "Scorer | None"]


class TierRuntime:
    """A tier's Celery app plus the model, store and chunk processor each worker process holds."""

    def __init__(self, tier: int, decide: Decide, loader: Loader, env: dict[str, str] | None = None,
                 batching: Batching | None = None, preload: Preload | None = None) -> None:
        self.tier = tier
        self.queue = f"tier{tier}"
        self.decide = decide
        self.loader = loader  # swappable before the first load (a test wraps the model)
        self.preload = preload
        self._preloaded: tuple[int, str] | None = None  # (level, line): what the preload did, logged when ready
        self._env = env
        self.app: Celery = make_app(self.queue, ClusterSettings.from_env(env=env))
        self.model = None
        self.store: ResultStore | None = None
        self.settings: WorkerSettings | None = None
        self.metrics: WorkerMetrics | None = None
        self.scorer: Scorer | None = None  # the model, or tier 2's cross-chunk batcher in front of it
        self.processor: ChunkProcessor | None = None
        self._batching = batching
        self._lock = threading.Lock()
        self._serving = False  # set once a worker of *this* app starts (tests import both tiers)
        self._controller = None  # the Celery WorkController, whose exit code a cold shutdown would lose
        self._labels: list[str] = []  # what the model serves, read from its config before any fork
        self._registry: tuple[int, ResultStore] | None = None  # (pid, store) of the process that beats
        self._connect_signals()

    # -- lifecycle ----------------------------------------------------------
    def _connect_signals(self) -> None:
        signals.worker_init.connect(self._preflight, weak=False)
        signals.worker_process_init.connect(self._on_process_init, weak=False)
        signals.worker_ready.connect(self._on_ready, weak=False)
        signals.worker_shutdown.connect(self._on_shutdown, weak=False)
        signals.worker_process_shutdown.connect(self._on_shutdown, weak=False)  # prefork children
        signals.worker_shutting_down.connect(self._on_shutting_down, weak=False)

    def _preflight(self, sender=None, **_) -> None:
        """Before any fork: fail the whole worker with one line if its settings or model are unusable."""
        if getattr(sender, "app", None) is not self.app:
            return
        self._serving = True
        self._controller = sender
        try:
            self.settings = WorkerSettings.from_env(self.tier, self._env)
            self._labels = model_labels(self.settings.model)
            ResultStore.open(self.settings.cluster, retries=1)
        except TangoError as exc:
            log.critical("tier %d worker cannot start: %s", self.tier, exc)
            raise SystemExit(exc.exit_code) from None
        self._preload()

    def _preload(self) -> None:
        """Best effort: a model whose code cannot be imported fails in the child's load, in one line.
        What happened is logged once the worker is ready: Celery sets up logging after this signal."""
        if self.preload is None:
            return
        start = time.perf_counter()
        try:
            self.preload(self.settings)
        except Exception as exc:  # noqa: BLE001 - the real load reports it
            self._preloaded = (logging.WARNING, f"tier {self.tier} worker could not import its model's code "
                                                f"before forking: {first_line(exc)}")
            return
        self._preloaded = (logging.INFO, f"tier {self.tier} worker imported its model's code before forking, "
                                         f"in {time.perf_counter() - start:.1f} s")

    def _on_process_init(self, **_) -> None:
        if not self._serving:
            return
        self._load_or_stop(in_pool_child=True)

    def _on_ready(self, sender=None, **_) -> None:
        if not self._serving:
            return
        if self._preloaded is not None:
            log.log(*self._preloaded)
        self._start_sweeping(sender)
        self._start_heartbeat(sender)
        pool = getattr(sender, "pool", None)
        if pool is not None and type(pool).__module__.endswith("prefork"):
            return  # the children loaded their own models after the fork
        self._load_or_stop(in_pool_child=False)

    def _start_sweeping(self, consumer) -> None:
        """Sweep for stalled jobs on the worker's own timer (its event loop: no thread beside the forks)."""
        cluster = self.settings.cluster
        timer = getattr(consumer, "timer", None)
        if not cluster.sweep_every or timer is None:
            return
        sweeper = StallSweeper(ResultStore.open(cluster, retries=1), self.app, cluster.sweep_every,
                               owner=self.worker_name, on_resumed=self._count_resumed)
        timer.call_repeatedly(cluster.sweep_every, self._sweep_safely, (sweeper,))
        log.info("tier %d worker sweeps for stalled jobs every %.0f s", self.tier, cluster.sweep_every)

    def _start_heartbeat(self, consumer) -> None:
        """Keep this worker in the label registry while it lives, from its main process's timer: an entry
        lives ``worker_ttl`` seconds past its last beat, so a worker killed without a word (SIGKILL, the
        out-of-memory killer) drops out by itself, and a later submit never takes its labels."""
        settings = self.settings
        self._registry = (os.getpid(), ResultStore.open(settings.cluster, retries=1))
        self._beat()
        timer = getattr(consumer, "timer", None)
        if timer is not None:
            timer.call_repeatedly(settings.worker_ttl / 4, self._beat)

    def _beat(self) -> None:
        settings, (_, store) = self.settings, self._registry
        try:
            store.advertise(self.tier, self.worker_name, {"model": settings.model, "labels": self._labels,
                                                          "device": settings.device}, settings.worker_ttl)
        except redis.RedisError as exc:  # a missed beat is retried at the next; it must never stop the worker
            log.warning("tier %d worker could not renew its place in the registry: %s", self.tier, first_line(exc))

    def _sweep_safely(self, sweeper: StallSweeper) -> None:
        try:
            sweeper.sweep()
        except Exception as exc:  # noqa: BLE001 - a failed sweep must never stop the worker; the next one retries
            log.warning("the sweep for stalled jobs failed: %s", first_line(exc))

    def _count_resumed(self, items: int) -> None:
        if self.metrics is not None:
            self.metrics.resumed(items)

    def _load_or_stop(self, in_pool_child: bool) -> None:
        """A process without its model must not take tasks, nor be replaced forever: stop the worker."""
        try:
            self.ensure_loaded()
        except Exception as exc:  # noqa: BLE001 - whatever it is, this process cannot serve
            code = exc.exit_code if isinstance(exc, TangoError) else 2
            model = self.settings.model if self.settings else os.environ.get(ENV_MODEL, "?")
            shut_down_worker(f"tier {self.tier} worker process {os.getpid()} cannot load its model {model}: "
                             f"{first_line(exc)}", code, in_pool_child)

    def _on_shutting_down(self, how: str = "", exitcode: int | None = None, **_) -> None:
        """Keep a cold shutdown's non-zero status (SIGQUIT, as ``shut_down_worker`` sends): Celery's
        terminate path drops it and exits 0, which would hide a worker that could not serve."""
        drain = getattr(self.scorer, "drain", None)
        if self._serving and drain is not None:
            drain()  # tier 2's batcher: run what is queued now, so its task threads finish and ack
        if self._serving and self._controller is not None and how == "Cold" and exitcode:
            self._controller.exitcode = exitcode

    def _on_shutdown(self, **_) -> None:
        close = getattr(self.scorer, "close", None)
        if self._serving and close is not None:
            close()  # run what is queued, so the waiting tasks store their results and get acked
        if self._serving and self._registry is not None and self._registry[0] == os.getpid():
            try:
                self._registry[1].withdraw(self.tier, self.worker_name)  # a pool process's exit withdraws nothing
            except redis.RedisError:
                pass

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def ensure_loaded(self) -> None:
        """Load the model and open the store once per process (thread-safe, idempotent)."""
        if self.model is not None:
            return
        with self._lock:
            if self.model is not None:
                return
            settings = self.settings or WorkerSettings.from_env(self.tier, self._env)
            start = time.perf_counter()
            model = self.loader(settings)
            self.metrics = WorkerMetrics(self.tier)
            model.on_batch = self.metrics.batch
            self.store = ResultStore.open(settings.cluster, retries=STORE_RETRIES)
            self.settings = settings
            self.scorer = (self._batching(settings, model) if self._batching else None) or model
            self.processor = ChunkProcessor(
                tier=self.tier, model=settings.model, model_labels=list(model.labels), scorer=self.scorer,
                store=self.store, decide=self.decide, send=lambda chunk: send_chunk(self.app, TASKS[chunk.tier], chunk),
                max_attempts=settings.max_attempts, hooks=[self.metrics])
            if settings.metrics_port:
                client = self.store.client
                self.metrics.watch_queues(lambda: queue_depths(client))
                self.metrics.serve(settings.metrics_port)
            self.model = model  # last: other threads take a set model to mean "loaded"
            log.info("tier %d worker ready: model %s (labels %s), device %s, queue %r, batch size %d, "
                     "pid %d, Redis %s, loaded in %.1f s", self.tier, settings.model, model.labels,
                     model.device, self.queue, settings.batch_size, os.getpid(),
                     settings.cluster.masked_url, time.perf_counter() - start)

    # -- one task ------------------------------------------------------------
    def run(self, payload: object) -> dict:
        """One task: decode the message, then let the chunk processor take it from there."""
        try:
            chunk = Chunk.decode(payload)
        except MessageError as exc:
            log.error("tier %d dropped a malformed message: %s", self.tier, exc)
            return {"rejected": str(exc)}
        self.ensure_loaded()
        try:
            return self.processor.process(chunk)
        except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
            # the store or the broker is away: requeue now (no ETA retries on a Redis broker)
            log.error("job %r chunk %s: Redis unavailable (%s); giving the task back", chunk.job, chunk.name, exc)
            raise Reject(str(exc), requeue=True) from None
        except JobError as exc:
            log.error("job %r chunk %s dropped: %s", chunk.job, chunk.name, exc)
            return {"dropped": str(exc)}
        except Exception as exc:  # a bug costs this chunk's items, recorded; Celery would ack it silently
            log.exception("job %r chunk %s: tier %d worker error", chunk.job, chunk.name, self.tier)
            return self._fail(chunk, f"tier {self.tier} worker error: {type(exc).__name__}: {first_line(exc)}")

    def _fail(self, chunk: Chunk, reason: str) -> dict:
        """Record the chunk's items as failed; Redis away gives the task back here too, rather than
        letting Celery acknowledge a task whose items were never answered."""
        try:
            return self.processor.fail(chunk, reason)
        except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
            log.error("job %r chunk %s: Redis unavailable (%s); giving the task back", chunk.job, chunk.name, exc)
            raise Reject(str(exc), requeue=True) from None
