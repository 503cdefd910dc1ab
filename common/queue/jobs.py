"""Job records: what a job was asked to do, its counters and state, and the indexes of jobs.

A job's record is one hash (``keys.meta_key``). It is created once, at submit, and its state only
moves through ``lua.TRANSITION``, so a cancel and a finish never cross. Everything that reads or
writes a record goes through here (the sweep's marks too), so its fields have one owner.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import redis

from common.data.corpus import KEPT_REJECTS
from common.errors import JobError, JobGoneError
from common.queue.keys import (ACTIVE_INDEX, ACTIVE_INDEXED, JOBS_INDEX, feeder_key, job_keys, meta_key, rejected_key,
                               validate_job_id)

if TYPE_CHECKING:
    from redis.commands.core import Script

ACTIVE_STATES = ("submitting", "running")
FINAL_STATES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobSpec:
    """What a job is asked to do, recorded once at submit."""

    job: str
    total: int
    labels: list[str]
    threshold: float
    chunk_size: int
    source: str = ""
    source_size: int = 0  # the source's bytes and their SHA-256 at submit: ``resume`` reads no other file
    source_sha256: str = ""
    small: str = ""
    big: str = ""
    small_revision: str = ""  # ``common.revision.model_revision`` of each, at submit ("" when none)
    big_revision: str = ""
    labelled: int = 0
    truncated: int = 0  # items whose text the parser cut to its maximum length
    rejected: int = 0  # input records left out by --skip-invalid (not part of ``total``)
    corpus: str = ""  # how the source was read (JSON), so ``resume`` can read it the same way
    audit: float = 0.0  # share of tier 1's answers that tier 2 checks
    window: int = 0  # most unanswered items of the job in the broker at once (0: no limit)
    phase: str = ""  # a job with a quality target: "calibrating", then "certified" (``common.queue.calibration``)
    calibration: str = ""  # its target, sample size and cutoff (``JobCalibration.to_json``)


@dataclass
class JobStatus:
    """A snapshot of one job's record."""

    job: str
    state: str
    total: int
    labels: list[str]
    threshold: float
    created: float
    finished: float | None = None
    done: int = 0
    failed: int = 0
    tier1: int = 0
    tier2: int = 0
    gold: int = 0
    correct: int = 0
    rejected: int = 0
    audit: float = 0.0  # the audit rate the job was submitted with
    audited: int = 0  # tier 1's answers tier 2 has checked so far
    audit_agreed: int = 0  # of those, how many it labelled the same
    drained: int = 0  # items 0..drained-1 were written out and deleted by ``tango results --drain``
    fed: int = 0  # items 0..fed-1 have been queued (a windowed submit queues the rest as workers answer)
    window: int = 0  # the window the job was submitted with (0: none)
    feeder: bool = False  # a feeder of the job (submit, resume) was heard from within its lease
    extra: dict = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return self.done + self.failed

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def being_fed(self) -> bool:
        """Still submitting, and its feeder was heard from within its lease: it queues the rest itself."""
        return self.state == "submitting" and self.feeder

    @property
    def feeder_lost(self) -> bool:
        """Still submitting, with no feeder heard from within its lease: nothing queues the rest."""
        return self.state == "submitting" and not self.feeder

    @property
    def waiting_for_workers(self) -> bool:
        """Submitted without a label set and no worker has taken a chunk yet (the first one fixes it)."""
        return not self.is_final and not self.labels

    @property
    def elapsed(self) -> float:
        return max((self.finished or time.time()) - self.created, 1e-9)

    @property
    def rate(self) -> float:
        """Items answered per second since the job was recorded."""
        return self.answered / self.elapsed

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.gold if self.gold else None


class JobRecords:
    """The job-record half of ``ResultStore`` (which supplies ``client``, ``url`` and the scripts)."""

    client: redis.Redis
    url: str
    _lease_ms: int
    _transition: "Script"
    _fed: "Script"

    def create_job(self, spec: JobSpec) -> None:
        """Record a new job in state ``submitting``, with its submit's lease as feeder; an existing id is refused."""
        key = meta_key(spec.job)
        now = time.time()
        if not self.client.hsetnx(key, "created", repr(now)):
            raise JobError(f"job {spec.job!r} already exists; choose another --job-id")
        fields = {"job": spec.job, "state": "submitting", "total": spec.total, "labels": json.dumps(spec.labels),
                  "threshold": repr(spec.threshold), "chunk_size": spec.chunk_size, "source": spec.source,
                  "source_size": spec.source_size, "source_sha256": spec.source_sha256,
                  "small": spec.small, "big": spec.big, "small_revision": spec.small_revision,
                  "big_revision": spec.big_revision, "labelled": spec.labelled, "truncated": spec.truncated,
                  "rejected": spec.rejected, "corpus": spec.corpus, "audit": repr(spec.audit), "window": spec.window,
                  "done": 0, "failed": 0, "tier1": 0, "tier2": 0, "gold": 0, "correct": 0, "audited": 0,
                  "audit_agreed": 0, "drained": 0, "bitmap": 1,
                  **({"phase": spec.phase, "calibration": spec.calibration} if spec.calibration else {})}
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.zadd(JOBS_INDEX, {spec.job: now})
        pipe.zadd(ACTIVE_INDEX, {spec.job: now})
        pipe.set(feeder_key(spec.job), "1", px=self._lease_ms)
        pipe.execute()

    def mark_submitted(self, job: str) -> None:
        """``submitting`` -> ``running``, unless the job already finished or was cancelled."""
        if self._transition(keys=[meta_key(job)], args=["running", "submitting"]) < 0:
            raise JobGoneError(gone(job))
        self.end_feeding(job)

    def feeding(self, job: str) -> None:
        """A feeder's sign of life: renews its lease on the job."""
        self.client.set(feeder_key(job), "1", px=self._lease_ms)

    def end_feeding(self, job: str) -> None:
        """Give the lease up at once, so a feeder that stops early is not taken for alive meanwhile."""
        self.client.delete(feeder_key(job))

    def cancel(self, job: str) -> bool:
        """Stop a job: workers skip its remaining chunks. False when it had already ended."""
        changed = self._transition(keys=[meta_key(job)], args=["cancelled", *ACTIVE_STATES])
        if changed < 0:
            raise self._missing(job)
        if changed:
            self.client.hset(meta_key(job), "finished", repr(time.time()))
        return bool(changed)

    def state(self, job: str) -> str | None:
        """The job's state, or None when its records are gone (one round trip, for workers)."""
        return self.client.hget(meta_key(job), "state")

    def progress(self, job: str) -> tuple[str | None, int]:
        """The job's state and answered count (one round trip, for a feeder's window); (None, 0) when gone."""
        state, done, failed = self.client.hmget(meta_key(job), "state", "done", "failed")
        return state, int(done or 0) + int(failed or 0)

    def mark_fed(self, job: str, items: int, phase: str = "") -> None:
        """Record how far into the corpus a feeder has queued (``tango status`` shows it while submitting);
        ``phase``: the calibration phase it fed in, so a sample feeder's late note is not taken for the rest's."""
        self._fed(keys=[meta_key(job)], args=[items, phase])

    def status(self, job: str) -> JobStatus:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(meta_key(job))
        pipe.exists(feeder_key(job))
        raw, feeder = pipe.execute()
        if not raw:
            raise self._missing(job)
        return status_from(raw, feeder)

    def list_jobs(self, limit: int = 20) -> list[JobStatus]:
        """The most recent jobs, newest first; ids whose records are gone are reported as ``gone``."""
        ids = self.client.zrevrange(JOBS_INDEX, 0, max(limit, 1) - 1, withscores=True)
        pipe = self.client.pipeline()
        for job, _ in ids:
            pipe.hgetall(meta_key(job))
            pipe.exists(feeder_key(job))
        replies = pipe.execute()
        out = []
        for (job, created), raw, feeder in zip(ids, replies[::2], replies[1::2]):
            out.append(status_from(raw, feeder) if raw else JobStatus(job, "gone", 0, [], 0.0, created))
        return out

    def active_jobs(self) -> list[JobStatus]:
        """Every job ``submitting`` or ``running``, read from the index of active jobs alone: a job found
        ended (or purged) there is dropped from it, so a sweep never reads the records of ended jobs again."""
        self._index_active_once()
        ids = self.client.zrange(ACTIVE_INDEX, 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for job in ids:
            pipe.hgetall(meta_key(job))
            pipe.exists(feeder_key(job))
        replies = pipe.execute()
        active, ended = [], []
        for job, raw, feeder in zip(ids, replies[::2], replies[1::2]):
            if raw and raw.get("state") in ACTIVE_STATES:
                active.append(status_from(raw, feeder))
            else:
                ended.append(job)
        if ended:
            self.client.zrem(ACTIVE_INDEX, *ended)
        return active

    def _index_active_once(self) -> None:
        """Jobs recorded by a tango from before the active index: added to it once, by their state alone."""
        if self.client.exists(ACTIVE_INDEXED):
            return
        ids = self.client.zrange(JOBS_INDEX, 0, -1, withscores=True)
        pipe = self.client.pipeline(transaction=False)
        for job, _ in ids:
            pipe.hget(meta_key(job), "state")
        active = {job: created for (job, created), state in zip(ids, pipe.execute()) if state in ACTIVE_STATES}
        if active:
            self.client.zadd(ACTIVE_INDEX, active)
        self.client.set(ACTIVE_INDEXED, 1)

    def purge(self, job: str) -> None:
        """Delete an ended job's records; an active one is refused (cancel it first)."""
        state = self.state(job)
        if state in ACTIVE_STATES:
            raise JobError(f"job {job!r} is {state}: cancel it before purging")
        if state is None and self.client.zscore(JOBS_INDEX, validate_job_id(job)) is None:
            raise self._missing(job)
        self.delete_job(job)

    def delete_job(self, job: str) -> None:
        self.client.delete(*job_keys(job))
        self.client.zrem(JOBS_INDEX, validate_job_id(job))
        self.client.zrem(ACTIVE_INDEX, job)

    def add_rejects(self, job: str, rejects: Sequence[tuple[int, str]]) -> None:
        """Keep why input lines were left out (the first ``KEPT_REJECTS``); the count is in the job."""
        kept = {str(line): reason for line, reason in rejects[:KEPT_REJECTS]}
        if kept:
            self.client.hset(rejected_key(job), mapping=kept)

    def rejects(self, job: str) -> list[tuple[int, str]]:
        """The kept reasons, by input line."""
        return sorted((int(line), reason) for line, reason in self.client.hgetall(rejected_key(job)).items())

    def mark_swept(self, job: str, answered: int) -> int | None:
        """Record a sweep's look at the job's answered count; returns the previous sweep's (None: first look)."""
        pipe = self.client.pipeline()
        pipe.hget(meta_key(job), "swept")
        pipe.hset(meta_key(job), "swept", answered)
        before, _ = pipe.execute()
        return None if before is None else int(before)

    def count_resumed(self, job: str, items: int) -> None:
        """Add to the items sent again by the cluster's sweep (``tango status`` shows them)."""
        self.client.hincrby(meta_key(job), "resumed", items)

    def _missing(self, job: str) -> JobError:
        if self.client.zscore(JOBS_INDEX, validate_job_id(job)) is not None:
            return JobGoneError(gone(job))
        return JobError(f"no job {job!r} in Redis at {self.url} (see `tango jobs`){self.volatility()}")

    def volatility(self) -> str:
        """A warning when this Redis keeps no append-only file (a restart then loses every job), else ''."""
        try:
            info = self.client.info("persistence")
        except redis.RedisError:  # an ACL user may not run INFO; say nothing rather than guess
            return ""
        if int(info.get("aof_enabled", 0)):
            return ""
        return "; this Redis runs without appendonly, so a restart loses every job's records"


def gone(job: str) -> str:
    return (f"the records of job {job!r} are gone (did Redis restart without persistence, "
            "or were the keys evicted?); submit it again")


def status_from(raw: dict[str, str], feeder: bool = False) -> JobStatus:
    number = {name: int(raw.get(name) or 0)
              for name in ("total", "done", "failed", "tier1", "tier2", "gold", "correct", "rejected", "audited",
                           "audit_agreed", "drained", "fed", "window")}
    known = {"job", "state", "labels", "threshold", "created", "finished", "audit", *number}
    return JobStatus(job=raw.get("job", "?"), state=raw.get("state", "?"), labels=json.loads(raw.get("labels", "[]")),
                     threshold=float(raw.get("threshold") or 0), created=float(raw.get("created") or 0),
                     audit=float(raw.get("audit") or 0),
                     finished=float(raw["finished"]) if raw.get("finished") else None, feeder=bool(feeder),
                     extra={k: v for k, v in raw.items() if k not in known}, **number)
