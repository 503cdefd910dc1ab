"""What both tiers' workers share: settings, the model held once per process, and a chunk's life.

A worker process loads its model once, after the fork (``worker_process_init``
for prefork; on first use for the solo and threads pools, which GPU workers
use because forked processes and CUDA do not mix). Each task then decodes a
chunk, checks that the job still wants it and that the model speaks the job's
labels, runs the model, and hands the probabilities to the tier's own
``decide`` function; the results are written through the store's idempotent
script before the task returns, which is when Celery acknowledges it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import redis
from celery import Celery, signals
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from common.celery_app import make_app, send_chunk
from common.config import ClusterSettings
from common.errors import (ConfigError, JobError, JobGoneError, LabelMismatchError, MessageError, TangoError,
                           first_line)
from common.faults import (DEFAULT_MAX_ATTEMPTS, ENV_MAX_ATTEMPTS, Scorer, attempts_exhausted, item_probabilities,
                           stop_worker)
from common.labels import LabelAlignment, align_labels, model_labels
from common.messages import TASK_TIER2, Chunk, WorkItem
from common.results import ResultRecord, gold_matches
from common.store import ResultStore
from common.telemetry import WorkerMetrics

log = logging.getLogger(__name__)

ENV_MODEL = "TANGO_MODEL"
ENV_DEVICE = "TANGO_DEVICE"
ENV_BATCH_SIZE = "TANGO_BATCH_SIZE"
ENV_THREADS = "TANGO_THREADS"
ENV_MAX_WAIT_MS = "TANGO_MAX_WAIT_MS"  # tier 2: > 0 gathers items of many chunks into one batch
ENV_QUANTIZE = "TANGO_QUANTIZE"
ENV_PRECISION = "TANGO_PRECISION"
ENV_METRICS_PORT = "TANGO_METRICS_PORT"
STORE_RETRIES = 8  # ~15 s of backoff: rides out a Redis restart before giving the task back

Entry = tuple[int, ResultRecord, "bool | None"]
Decision = tuple[list[Entry], list[WorkItem]]


@dataclass(frozen=True)
class WorkerSettings:
    """One worker's model and how it runs it, read from the environment ``tango worker`` sets."""

    tier: int
    model: str
    device: str = "cpu"
    batch_size: int = 32
    threads: int | None = None
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # starts of one chunk before its items are recorded as failed
    max_wait_ms: int = 0
    quantize: bool = False
    precision: str = "fp32"
    metrics_port: int = 0

    @classmethod
    def from_env(cls, tier: int, env: dict[str, str] | None = None) -> "WorkerSettings":
        env = os.environ if env is None else env
        model = env.get(ENV_MODEL, "").strip()
        if not model:
            raise ConfigError(f"tier {tier} worker: set {ENV_MODEL} to the model directory "
                              f"(or start it with `tango worker tier{tier} --model PATH`)")
        return cls(tier=tier, model=model, device=env.get(ENV_DEVICE, "cpu") or "cpu",
                   batch_size=_int(env, ENV_BATCH_SIZE, 32), threads=_int(env, ENV_THREADS, None),
                   cluster=ClusterSettings.from_env(env=env),
                   max_attempts=_int(env, ENV_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
                   max_wait_ms=_int(env, ENV_MAX_WAIT_MS, 0, low=0), quantize=env.get(ENV_QUANTIZE, "") == "1",
                   precision=env.get(ENV_PRECISION) or "fp32", metrics_port=_int(env, ENV_METRICS_PORT, 0, low=0))

    def to_env(self) -> dict[str, str]:
        env = {ENV_MODEL: self.model, ENV_DEVICE: self.device, ENV_BATCH_SIZE: str(self.batch_size),
               ENV_MAX_ATTEMPTS: str(self.max_attempts), ENV_MAX_WAIT_MS: str(self.max_wait_ms),
               ENV_QUANTIZE: "1" if self.quantize else "", ENV_PRECISION: self.precision,
               ENV_METRICS_PORT: str(self.metrics_port), **self.cluster.to_env()}
        if self.threads:
            env[ENV_THREADS] = str(self.threads)
        return env


class TierRuntime:
    """A tier's Celery app plus the model and store each worker process holds."""

    def __init__(self, tier: int, decide: Callable[["TierRuntime", Chunk, np.ndarray, LabelAlignment], Decision],
                 env: dict[str, str] | None = None, batching: "Callable[[WorkerSettings, Scorer], Scorer | None] | None" = None
                 ) -> None:
        self.tier = tier
        self.queue = f"tier{tier}"
        self.decide = decide
        self._env = env
        self.app: Celery = make_app(self.queue, ClusterSettings.from_env(env=env))
        self.model = None
        self.store: ResultStore | None = None
        self.settings: WorkerSettings | None = None
        self.metrics: WorkerMetrics | None = None
        self.scorer: Scorer | None = None  # the model, or tier 2's cross-chunk batcher in front of it
        self._batching = batching
        self._lock = threading.Lock()
        self._serving = False  # set once a worker of *this* app starts (tests import both tiers)
        self._controller = None  # the Celery WorkController, whose exit code a cold shutdown would lose
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
            model_labels(self.settings.model)
            ResultStore.open(self.settings.cluster, retries=1)
        except TangoError as exc:
            log.critical("tier %d worker cannot start: %s", self.tier, exc)
            raise SystemExit(exc.exit_code) from None

    def _on_process_init(self, **_) -> None:
        if not self._serving:
            return
        self._load_or_stop(in_pool_child=True)

    def _on_ready(self, sender=None, **_) -> None:
        if not self._serving:
            return
        pool = getattr(sender, "pool", None)
        if pool is not None and type(pool).__module__.endswith("prefork"):
            return  # the children loaded their own models after the fork
        self._load_or_stop(in_pool_child=False)

    def _load_or_stop(self, in_pool_child: bool) -> None:
        """A process without its model must not take tasks, nor be replaced forever: stop the worker."""
        try:
            self.ensure_loaded()
        except Exception as exc:  # noqa: BLE001 - whatever it is, this process cannot serve
            code = exc.exit_code if isinstance(exc, TangoError) else 2
            model = self.settings.model if self.settings else os.environ.get(ENV_MODEL, "?")
            stop_worker(f"tier {self.tier} worker process {os.getpid()} cannot load its model {model}: "
                        f"{first_line(exc)}", code, in_pool_child)

    def _on_shutting_down(self, how: str = "", exitcode: int | None = None, **_) -> None:
        """Keep a cold shutdown's non-zero status (SIGQUIT, as ``stop_worker`` sends): Celery's
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
        if self._serving and self.store is not None:
            try:
                self.store.withdraw(self.tier, self.worker_name)
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
            model = load_model(settings)
            self.metrics = WorkerMetrics(self.tier)
            model.on_batch = self.metrics.batch
            self.store = ResultStore.open(settings.cluster, retries=STORE_RETRIES)
            self.settings = settings
            self.scorer = (self._batching(settings, model) if self._batching else None) or model
            if settings.metrics_port:
                self.metrics.serve(settings.metrics_port)
            self.model = model  # last: other threads take a set model to mean "loaded"
            self.store.advertise(self.tier, self.worker_name, {"model": settings.model, "labels": self.model.labels,
                                                               "device": str(self.model.device)})
            log.info("tier %d worker ready: model %s (labels %s), device %s, queue %r, batch size %d, "
                        "pid %d, Redis %s, loaded in %.1f s", self.tier, settings.model, self.model.labels,
                        self.model.device, self.queue, settings.batch_size, os.getpid(),
                        settings.cluster.masked_url, time.perf_counter() - start)

    # -- one task ------------------------------------------------------------
    def run(self, payload: object) -> dict:
        """Decide one chunk; returns a small JSON summary (logged by Celery, never stored)."""
        try:
            chunk = Chunk.decode(payload)
        except MessageError as exc:
            log.error("tier %d dropped a malformed message: %s", self.tier, exc)
            return {"rejected": str(exc)}
        self.ensure_loaded()
        try:
            return self._run(chunk)
        except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
            # the store or the broker is away: requeue now (no ETA retries on a Redis broker)
            log.error("job %r chunk %d: Redis unavailable (%s); giving the task back", chunk.job, chunk.chunk, exc)
            raise Reject(str(exc), requeue=True) from None
        except JobError as exc:
            log.error("job %r chunk %d dropped: %s", chunk.job, chunk.chunk, exc)
            return {"dropped": str(exc)}
        except Exception as exc:  # a bug costs this chunk's items, recorded; Celery would ack it silently
            log.exception("job %r chunk %d: tier %d worker error", chunk.job, chunk.chunk, self.tier)
            return self._fail(chunk, f"tier {self.tier} worker error: {type(exc).__name__}: {first_line(exc)}")

    def _run(self, chunk: Chunk) -> dict:
        state, attempt = self.store.begin(chunk.job, self.tier, chunk.chunk)
        if state is None:
            raise JobGoneError(f"the records of job {chunk.job!r} are gone")
        if state == "cancelled":
            log.info("job %r chunk %d skipped: job cancelled", chunk.job, chunk.chunk)
            return {"skipped": "cancelled"}
        exhausted = attempts_exhausted(self.tier, attempt, self.settings.max_attempts)
        if exhausted:
            return self._fail(chunk, exhausted)
        start = time.perf_counter()
        try:
            alignment = job_alignment(list(chunk.labels), self.model.labels)
        except LabelMismatchError as exc:
            return self._fail(chunk, f"tier {self.tier} model {self.settings.model} does not fit the job: {exc}")
        texts = [item.text for item in chunk.items]
        pairs = [item.text_pair or "" for item in chunk.items] if chunk.has_pairs else None
        probs, ok, errors = item_probabilities(self.scorer, texts, pairs)
        if errors:
            self._fail_items(chunk, errors)
            if not ok:
                return {"job": chunk.job, "chunk": chunk.chunk, "failed": len(errors)}
            chunk = replace(chunk, items=tuple(chunk.items[n] for n in ok))
        entries, forward = self.decide(self, chunk, probs, alignment)
        if forward:
            send_chunk(self.app, TASK_TIER2, chunk.forward(forward))
        added = self.store.write(chunk.job, entries)
        self.metrics.chunk(len(entries), len(forward))
        log.info("job %r chunk %d: %d items, %d decided (%d new), %d sent on, %.3f s", chunk.job, chunk.chunk,
                 len(chunk.items), len(entries), added, len(forward), time.perf_counter() - start)
        return {"job": chunk.job, "chunk": chunk.chunk, "decided": len(entries), "forwarded": len(forward)}

    def _fail(self, chunk: Chunk, reason: str) -> dict:
        log.error("job %r chunk %d failed: %s", chunk.job, chunk.chunk, reason)
        self.metrics.failed(len(chunk.items))
        self.store.write(chunk.job, [(item.index, ResultRecord.failed(item.id, self.tier, reason), None)
                                     for item in chunk.items])
        return {"job": chunk.job, "chunk": chunk.chunk, "failed": reason}

    def _fail_items(self, chunk: Chunk, errors: dict[int, str]) -> None:
        """Record the items the model raised on (by position in the chunk), each with its reason."""
        log.error("job %r chunk %d: tier %d model failed on %d of %d items (first: %s)", chunk.job, chunk.chunk,
                  self.tier, len(errors), len(chunk.items), next(iter(errors.values())))
        self.metrics.failed(len(errors))
        self.store.write(chunk.job, [(chunk.items[n].index, ResultRecord.failed(
            chunk.items[n].id, self.tier, f"tier {self.tier} model error: {reason}"), None)
            for n, reason in errors.items()])

    def entries(self, chunk: Chunk, items: list[WorkItem], label_ids: np.ndarray, scores: np.ndarray) -> list[Entry]:
        """Result records for decided items, with whether each matches its gold label."""
        labels = list(chunk.labels)
        out: list[Entry] = []
        for item, label_id, score in zip(items, label_ids, scores):
            label = labels[int(label_id)]
            record = ResultRecord(item.id, label, float(score), self.tier, self.settings.model)
            out.append((item.index, record, None if item.gold is None else gold_matches(item.gold, label, labels)))
        return out


def job_alignment(job_labels: list[str], model_names: list[str]) -> LabelAlignment:
    """Map a worker's model outputs onto the job's label ids (generic names by index).

    The same map sits in both tier slots so ``cascade.combine`` answers in the
    job's labels whichever tier this worker serves.
    """
    mapping = align_labels(job_labels, model_names).big_to_canonical
    return LabelAlignment(list(job_labels), mapping, mapping.copy())


def load_model(settings: WorkerSettings):
    """The tier's model, on its device, with the worker's thread count."""
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
        # the Rust tokenizer's thread pool obeys the same share of the cores (read once, at first use)
        os.environ.setdefault("RAYON_NUM_THREADS", str(settings.threads))
        if settings.threads == 1:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from common.models import load_tier

    return load_tier(settings.model, device=settings.device, batch_size=settings.batch_size,
                     quantize=settings.quantize, precision=settings.precision)


def _int(env: dict[str, str], name: str, default: int | None, low: int = 1) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    return value
