"""The Redis result store: job records, idempotent result writes, ordered reads.

Delivery is at-least-once (late acks, redelivery after a crash), so a result
is written by one Lua script that stores an item only if it has no answer yet
and only then bumps the counters, and marks the job finished exactly once when
every item is answered. Running a chunk twice therefore changes nothing.
Audit outcomes go through a second script that keeps them beside the results
(never instead of one), counts each item once, and never moves the job's
state: a job is finished when every item is answered, and audits that arrive
after that still count.
Results are keyed by the item's input position, which lets ``iter_results``
stream a job back in input order, one block of keys at a time.
Which items are answered is also kept as a bitmap (1 bit per item) that the
write script checks and sets in the same step, so ``drain`` may delete results
once they are written out (``tango results --drain``) and a redelivered chunk
still stores nothing twice, and ``resume`` still sends nothing drained again.
Draining moves a watermark: the drained items are always items 0..drained-1.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.queue.config import DEFAULT_FEEDER_LEASE, ClusterSettings
from common.errors import JobError, JobGoneError, ServiceUnavailable, first_line
from common.data.corpus import KEPT_REJECTS
from common.queue.keys import (ACTIVE_INDEX, ACTIVE_INDEXED, JOBS_INDEX, answered_key, attempts_key, audited_key,
                               audits_key, failures_key, feeder_key, job_keys, meta_key, rejected_key, results_key,
                               validate_job_id, workers_key)
from common.queue.results import AuditOutcome, ResultRecord

log = logging.getLogger(__name__)

ACTIVE_STATES = ("submitting", "running")
FINAL_STATES = ("done", "failed", "cancelled")
READ_BLOCK = 1000
FAILED = "f"

# Contract: ``items(text, pattern, total)`` splits a script's packed lines into their fields (by
# ``pattern``, index first), or returns nil when any index is not an item number in [0, total): digits
# only, no sign, no leading zero, so a forged or malformed chunk cannot grow a job's bitmaps, finish
# it, or store a record that no export reads.
_ITEM_FUNCTION = """
local function items(text, pattern, total)
  local out = {}
  for line in string.gmatch(text, '[^\\n]+') do
    local fields = {string.match(line, pattern)}
    local index = fields[1]
    if not index or not (index == '0' or string.find(index, '^[1-9]%d*$')) or tonumber(index) >= total then
      return nil
    end
    out[#out + 1] = fields
  end
  return out
end
"""

# KEYS: meta, results, failures, answered, attempts. ARGV: now, then one line per item (see
# ``_entry_line``): "index TAB kind TAB correct TAB payload", lines joined by
# newlines; kind is the deciding tier ("1"/"2") or "f" for a failure, correct
# is "1"/"0" for an item with a gold label and "" otherwise. The payload is
# JSON, which never holds a raw tab or newline, so it is safe as the last field.
# An item is new when its answered bit was clear (SETBIT returns the old bit):
# the bit survives draining, the hashes do not. A job created with its bitmap
# (``bitmap`` in its meta) is answered by the bit alone; for an older job the
# hashes are still checked for a new bit, so it counts nothing twice. The counters
# are summed over the call and bumped once each: Redis's cost per item is one SETBIT and one HSET.
# A call naming any index that is not an item of the job (``_ITEM_FUNCTION``) stores nothing at all.
# The write that finishes the job deletes its per-chunk attempt counts: every item is answered, so
# they cap nothing any more, and a drained job keeps only its bitmaps and record.
# Returns how many items were new, -1 when the job's records are gone, -2 for a foreign index.
_WRITE = _ITEM_FUNCTION + """
local meta, results, failures, bits = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', meta) == 0 then return -1 end
local lines = items(ARGV[2], '^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)$', tonumber(redis.call('HGET', meta, 'total')))
if not lines then return -2 end
local added = 0
local counts = {failed = 0, done = 0, tier1 = 0, tier2 = 0, gold = 0, correct = 0}
local older = redis.call('HEXISTS', meta, 'bitmap') == 0
for _, line in ipairs(lines) do
  local index, kind, correct, payload = line[1], line[2], line[3], line[4]
  local new = redis.call('SETBIT', bits, index, 1) == 0
  if new and older then
    new = redis.call('HEXISTS', results, index) == 0 and redis.call('HEXISTS', failures, index) == 0
  end
  if new then
    added = added + 1
    if kind == 'f' then
      redis.call('HSET', failures, index, payload)
      counts.failed = counts.failed + 1
    else
      redis.call('HSET', results, index, payload)
      counts.done = counts.done + 1
      counts['tier' .. kind] = counts['tier' .. kind] + 1
      if correct ~= '' then
        counts.gold = counts.gold + 1
        counts.correct = counts.correct + tonumber(correct)
      end
    end
  end
end
for field, count in pairs(counts) do
  if count > 0 then redis.call('HINCRBY', meta, field, count) end
end
local state = redis.call('HGET', meta, 'state')
if added > 0 and (state == 'running' or state == 'submitting') then
  local answered = tonumber(redis.call('HGET', meta, 'done') or '0') + tonumber(redis.call('HGET', meta, 'failed') or '0')
  if answered >= tonumber(redis.call('HGET', meta, 'total')) then
    local failed = tonumber(redis.call('HGET', meta, 'failed') or '0')
    redis.call('HSET', meta, 'state', failed > 0 and 'failed' or 'done', 'finished', ARGV[1])
    redis.call('DEL', KEYS[5])
  end
end
return added
"""

# The first item at or after ``start`` whose answered bit is clear (``total`` when none is below it):
# bit by bit up to a byte boundary, then BITPOS from that byte (its bit-granular form needs Redis 7).
# BITPOS answers 0 for a missing key and -1 past the string's end: both mean "clear from here".
_FRONTIER_FUNCTION = """
local function frontier(bits, start, total)
  local i = start
  while i < total and i % 8 ~= 0 do
    if redis.call('GETBIT', bits, i) == 0 then return i end
    i = i + 1
  end
  if i >= total then return total end
  local pos = redis.call('BITPOS', bits, 0, i / 8)
  if pos < i then return i end
  return math.min(pos, total)
end
"""

# KEYS: meta, answered. ARGV: start. Returns the end of the answered run from start, -1 when gone.
_FRONTIER = _FRONTIER_FUNCTION + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return frontier(KEYS[2], tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[1], 'total')))
"""

# KEYS: meta, results, failures, answered, audits. ARGV: stop. Deletes the stored records of items
# (results, failures, audit outcomes) from the job's ``drained`` watermark up to stop (never past the
# first unanswered item) and moves the mark; the audit counters stay in meta.
# Returns the new watermark, or -1 when the job's records are gone.
_DRAIN = _FRONTIER_FUNCTION + """
local meta, results, failures, bits, audits = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', meta) == 0 then return -1 end
local from = tonumber(redis.call('HGET', meta, 'drained') or '0')
local stop = math.min(tonumber(ARGV[1]), frontier(bits, from, tonumber(redis.call('HGET', meta, 'total'))))
if stop <= from then return from end
for i = from, stop - 1 do
  redis.call('HDEL', results, i)
  redis.call('HDEL', failures, i)
  redis.call('HDEL', audits, i)
end
redis.call('HSET', meta, 'drained', stop)
return stop
"""

# KEYS: meta, audits, audited. ARGV: one line per audited item, "index TAB agrees TAB payload" (agrees
# "1"/"0", payload JSON as in ``_WRITE``). An item counts once, when its audited bit was clear (and,
# for a job from before that bitmap, it had no record), so a redelivered audit chunk counts nothing
# twice, drained or not; a drained item's outcome is counted but not kept. A call naming any index
# that is not an item of the job stores nothing. Returns how many outcomes were new, -1 when the
# job's records are gone, -2 for a foreign index.
_AUDIT = _ITEM_FUNCTION + """
local meta, audits, marks = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then return -1 end
local lines = items(ARGV[1], '^([^\\t]*)\\t([^\\t]*)\\t(.*)$', tonumber(redis.call('HGET', meta, 'total')))
if not lines then return -2 end
local drained = tonumber(redis.call('HGET', meta, 'drained') or '0')
local added, agreed = 0, 0
for _, line in ipairs(lines) do
  local index, agrees, payload = line[1], line[2], line[3]
  if redis.call('SETBIT', marks, index, 1) == 0 and redis.call('HEXISTS', audits, index) == 0 then
    added = added + 1
    agreed = agreed + tonumber(agrees)
    if tonumber(index) >= drained then redis.call('HSET', audits, index, payload) end
  end
end
if added > 0 then
  redis.call('HINCRBY', meta, 'audited', added)
  redis.call('HINCRBY', meta, 'audit_agreed', agreed)
end
return added
"""

# KEYS: meta, attempts. ARGV: the chunk's field (TIER:NAME, see ``Chunk.name``).
# Returns {state, attempt}, with state '' when the job's records are gone
# (then nothing is written, so a vanished job is never half re-created).
_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'', 0} end
return {state, redis.call('HINCRBY', KEYS[2], ARGV[1], 1)}
"""

# KEYS: meta. ARGV: the worker's labels as JSON. A job submitted before any worker was up has no
# labels yet ("[]"): the first worker to take one of its chunks fixes them, in one step, so two
# workers starting at once cannot fix different sets. Returns the job's labels ('' when gone).
_CLAIM_LABELS = """
local current = redis.call('HGET', KEYS[1], 'labels')
if not current then return '' end
if current == '[]' then
  redis.call('HSET', KEYS[1], 'labels', ARGV[1])
  return ARGV[1]
end
return current
"""

# KEYS: meta. ARGV: how many of the job's items a feeder has queued. Only moves forward (a resume
# re-sends earlier items) and never recreates the record of a job that was purged meanwhile.
_FED = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('HGET', KEYS[1], 'fed') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'fed', ARGV[1])
end
return 0
"""

# KEYS: attempts. ARGV: the chunk's field. Never below zero.
_REFUND = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
return 0
"""

# KEYS: meta. ARGV: new state, allowed current states...
# Returns 1 when the state changed, 0 when the current one forbids it, -1 when gone.
_TRANSITION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], 'state')
for n = 2, #ARGV do
  if state == ARGV[n] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    return 1
  end
end
return 0
"""


# KEYS: the tier's workers (hash: name -> info JSON). ARGV: worker, info JSON, seconds to live. A
# heartbeat: (re)publishes the worker with ``alive_until`` moved on, on Redis's clock (not the hosts').
_ADVERTISE = """
local info = cjson.decode(ARGV[2])
info['alive_until'] = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(info))
return 0
"""

# KEYS: as _ADVERTISE. Drops every worker whose time passed (or that never had one: a worker of an
# older tango, or one whose entry is not JSON) and returns the others, as name, info pairs.
_LIVE_WORKERS = """
local now = tonumber(redis.call('TIME')[1])
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for n = 1, #all, 2 do
  local ok, info = pcall(cjson.decode, all[n + 1])
  if ok and type(info) == 'table' and tonumber(info['alive_until'] or 0) > now then
    out[#out + 1] = all[n]
    out[#out + 1] = all[n + 1]
  else
    redis.call('HDEL', KEYS[1], all[n])
  end
end
return out
"""


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
    labelled: int = 0
    truncated: int = 0  # items whose text the parser cut to its maximum length
    rejected: int = 0  # input records left out by --skip-invalid (not part of ``total``)
    corpus: str = ""  # how the source was read (JSON), so ``resume`` can read it the same way
    audit: float = 0.0  # share of tier 1's answers that tier 2 checks
    window: int = 0  # most unanswered items of the job in the broker at once (0: no limit)


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


class ResultStore:
    """Job records and results in Redis; every method is safe to repeat."""

    def __init__(self, client: redis.Redis, url: str = "redis", feeder_lease: float = DEFAULT_FEEDER_LEASE) -> None:
        self.client = client
        self.url = url
        self.feeder_lease = feeder_lease
        self._lease_ms = max(1, int(feeder_lease * 1000))
        self._write = client.register_script(_WRITE)
        self._transition = client.register_script(_TRANSITION)
        self._begin = client.register_script(_BEGIN)
        self._refund = client.register_script(_REFUND)
        self._audit = client.register_script(_AUDIT)
        self._claim_labels = client.register_script(_CLAIM_LABELS)
        self._frontier = client.register_script(_FRONTIER)
        self._drain = client.register_script(_DRAIN)
        self._fed = client.register_script(_FED)
        self._advertise = client.register_script(_ADVERTISE)
        self._live_workers = client.register_script(_LIVE_WORKERS)

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

    # -- jobs -------------------------------------------------------------
    def create_job(self, spec: JobSpec) -> None:
        """Record a new job in state ``submitting``, with its submit's lease as feeder; an existing id is refused."""
        key = meta_key(spec.job)
        now = time.time()
        if not self.client.hsetnx(key, "created", repr(now)):
            raise JobError(f"job {spec.job!r} already exists; choose another --job-id")
        fields = {"job": spec.job, "state": "submitting", "total": spec.total, "labels": json.dumps(spec.labels),
                  "threshold": repr(spec.threshold), "chunk_size": spec.chunk_size, "source": spec.source,
                  "source_size": spec.source_size, "source_sha256": spec.source_sha256,
                  "small": spec.small, "big": spec.big, "labelled": spec.labelled, "truncated": spec.truncated,
                  "rejected": spec.rejected, "corpus": spec.corpus, "audit": repr(spec.audit), "window": spec.window,
                  "done": 0, "failed": 0, "tier1": 0, "tier2": 0, "gold": 0, "correct": 0, "audited": 0,
                  "audit_agreed": 0, "drained": 0, "bitmap": 1}
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.zadd(JOBS_INDEX, {spec.job: now})
        pipe.zadd(ACTIVE_INDEX, {spec.job: now})
        pipe.set(feeder_key(spec.job), "1", px=self._lease_ms)
        pipe.execute()

    def mark_submitted(self, job: str) -> None:
        """``submitting`` -> ``running``, unless the job already finished or was cancelled."""
        if self._transition(keys=[meta_key(job)], args=["running", "submitting"]) < 0:
            raise JobGoneError(_gone(job))
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

    def refund(self, job: str, tier: int, chunk: str) -> None:
        """Take back one counted start of a chunk: it ended because Redis was away, not by a crash."""
        self._refund(keys=[attempts_key(job)], args=[f"{tier}:{chunk}"])

    def begin(self, job: str, tier: int, chunk: str) -> tuple[str | None, int]:
        """The job's state and this start's attempt number for the chunk (1 on first delivery).

        Counting starts rather than failures is what lets a worker cap a chunk
        that kills its process: a dead process cannot count its own failure.
        """
        state, attempt = self._begin(keys=[meta_key(job), attempts_key(job)], args=[f"{tier}:{chunk}"])
        return (state or None), int(attempt)

    def claim_labels(self, job: str, labels: list[str]) -> list[str] | None:
        """The job's label set, fixed to ``labels`` if it had none yet; None when the job is gone."""
        current = self._claim_labels(keys=[meta_key(job)], args=[json.dumps(list(labels))])
        return json.loads(current) if current else None

    def progress(self, job: str) -> tuple[str | None, int]:
        """The job's state and answered count (one round trip, for a feeder's window); (None, 0) when gone."""
        state, done, failed = self.client.hmget(meta_key(job), "state", "done", "failed")
        return state, int(done or 0) + int(failed or 0)

    def mark_fed(self, job: str, items: int) -> None:
        """Record how far into the corpus a feeder has queued (``tango status`` shows it while submitting)."""
        self._fed(keys=[meta_key(job)], args=[items])

    def status(self, job: str) -> JobStatus:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(meta_key(job))
        pipe.exists(feeder_key(job))
        raw, feeder = pipe.execute()
        if not raw:
            raise self._missing(job)
        return _status(raw, feeder)

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
            out.append(_status(raw, feeder) if raw else JobStatus(job, "gone", 0, [], 0.0, created))
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
                active.append(_status(raw, feeder))
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

    # -- results ----------------------------------------------------------
    def write(self, job: str, entries: Sequence[tuple[int, ResultRecord, bool | None]]) -> int:
        """Store ``(index, record, correct)`` entries in one round trip; returns how many were new.

        A record with ``error`` set is stored as a failure. ``correct`` is None
        for items without a gold label. Raises ``JobError`` when the job's
        records are gone (a Redis that restarted without persistence).
        """
        if not entries:
            return 0
        packed = "\n".join(_entry_line(index, record, correct) for index, record, correct in entries)
        added = self._write(keys=job_keys(job)[:5], args=[repr(time.time()), packed])
        return self._checked(job, added, "a write")

    def audit(self, job: str, outcomes: Sequence[AuditOutcome]) -> int:
        """Store tier 2's checks of tier 1's answers in one round trip; returns how many were new.

        An item's result is never touched, nor the job's done/tier counts or
        state: an audit costs tier-2 time but answers nothing.
        """
        if not outcomes:
            return 0
        packed = "\n".join(f"{o.index}\t{int(o.agrees)}\t{o.to_json()}" for o in outcomes)
        added = self._audit(keys=[meta_key(job), audits_key(job), audited_key(job)], args=[packed])
        return self._checked(job, added, "an audit")

    def _checked(self, job: str, added: int, what: str) -> int:
        """A write script's answer, or its refusal as an error: a gone job, or a foreign item index
        (a malformed or forged chunk: nothing of it is stored, so it answers nothing)."""
        if added == -2:
            total = int(self.client.hget(meta_key(job), "total") or 0)
            raise JobError(f"job {job!r}: refused {what} naming an item outside the job's items "
                           f"0-{total - 1}; nothing of it was stored")
        if added < 0:
            raise JobGoneError(_gone(job))
        return int(added)

    def answered(self, job: str) -> "Answered":
        """The indices of every item with a result or a recorded failure, drained ones included
        (read from the bitmap: total/8 bytes, whatever the results hold)."""
        bits = self.client.execute_command("GET", answered_key(job), NEVER_DECODE=True)
        return Answered(bits or b"")

    def frontier(self, job: str, start: int) -> int:
        """The end of the run of answered items from ``start`` (the job's total when all are)."""
        stop = self._frontier(keys=[meta_key(job), answered_key(job)], args=[start])
        if stop < 0:
            raise JobGoneError(_gone(job))
        return int(stop)

    def drain(self, job: str, stop: int) -> int:
        """Delete the stored records of items below ``stop`` that were not drained yet, once the
        caller has written them out durably; returns the new watermark. Never passes an unanswered
        item, so the drained items stay exactly 0..watermark-1."""
        mark = self._drain(keys=[*job_keys(job)[:4], audits_key(job)], args=[stop])
        if mark < 0:
            raise JobGoneError(_gone(job))
        return int(mark)

    def read(self, job: str, start: int, stop: int,
             block: int = READ_BLOCK) -> Iterator[tuple[int, ResultRecord | None]]:
        """``(index, record)`` for items ``start..stop-1`` in order, None where nothing is stored,
        ``block`` keys per round trip."""
        for first in range(start, stop, block):
            indices = [str(i) for i in range(first, min(first + block, stop))]
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(results_key(job), indices)
            pipe.hmget(failures_key(job), indices)
            results, failures = pipe.execute()
            for index, result, failure in zip(indices, results, failures):
                raw = result or failure
                yield int(index), None if raw is None else ResultRecord.from_json(raw)

    def iter_results(self, job: str, partial: bool = False, block: int = READ_BLOCK) -> Iterator[ResultRecord]:
        """Every item's record in input order, ``block`` keys per round trip.

        Unless ``partial``, a job that has not finished is refused rather than
        streamed with holes, as is one whose first items were drained, and a
        hole in a finished job is an error. With ``partial`` the drained items
        and the unanswered ones are left out.
        """
        status = self.status(job)
        for index, record in self.read(job, export_start(status, partial), status.total, block):
            if record is not None:
                yield record
            elif not partial:
                raise JobError(f"job {job!r}: item {index} has no result although the job is "
                               f"{status.state}; its records are damaged")

    # -- worker registry ---------------------------------------------------
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

    def _missing(self, job: str) -> JobError:
        if self.client.zscore(JOBS_INDEX, validate_job_id(job)) is not None:
            return JobGoneError(_gone(job))
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


class Answered(Set):
    """A set of item indices read from a job's answered bitmap: a membership test is one bit,
    so ``resume`` of a huge job holds total/8 bytes instead of a Python set of every index.
    Bit i is bit ``7 - i % 8`` of byte ``i // 8``, as Redis numbers them."""

    def __init__(self, bits: bytes) -> None:
        self.bits = bits

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or index < 0 or index >> 3 >= len(self.bits):
            return False
        return bool(self.bits[index >> 3] >> (7 - (index & 7)) & 1)

    def __iter__(self) -> Iterator[int]:
        for number, byte in enumerate(self.bits):
            yield from (number * 8 + bit for bit in range(8) if byte >> (7 - bit) & 1)

    def __len__(self) -> int:
        return int.from_bytes(self.bits, "big").bit_count()

    def count_from(self, start: int) -> int:
        """How many indices at or after ``start`` are in the set (bit i is bit ``width - 1 - i`` of the number)."""
        width = len(self.bits) * 8
        if start >= width:
            return 0
        return (int.from_bytes(self.bits, "big") & ((1 << (width - max(start, 0))) - 1)).bit_count()


def export_start(status: JobStatus, partial: bool, follow: bool = False) -> int:
    """The first item an export of the job writes: 0, or past the drained ones with ``partial``.

    Refuses, in one line, a job that has not finished (unless ``partial`` or
    ``follow``) and a drained one without ``partial``: its first items are only
    in the output that drained them, and a file without them must not pass for
    the whole job.
    """
    if not (partial or follow) and status.state not in ("done", "failed"):
        raise JobError(f"job {status.job!r} is {status.state} ({status.answered} of {status.total} items); "
                       "wait for it or pass --partial")
    if status.drained and not partial:
        raise JobError(f"job {status.job!r}: items 0-{status.drained - 1} ({status.drained} of {status.total}) "
                       "are no longer in Redis: `tango results --drain` wrote them out and deleted them; "
                       f"pass --partial to write the items from {status.drained} on")
    return status.drained


def _entry_line(index: int, record: ResultRecord, correct: bool | None) -> str:
    """One item's line for ``_WRITE``: one packed argument per chunk, not four per item,
    because redis-py's per-argument packing cost more than the Lua write itself."""
    kind = FAILED if record.error is not None else str(record.tier)
    return f"{index}\t{kind}\t{'' if correct is None else int(correct)}\t{record.to_json()}"


def _gone(job: str) -> str:
    return (f"the records of job {job!r} are gone (did Redis restart without persistence, "
            "or were the keys evicted?); submit it again")


def _status(raw: dict[str, str], feeder: bool = False) -> JobStatus:
    number = {name: int(raw.get(name) or 0)
              for name in ("total", "done", "failed", "tier1", "tier2", "gold", "correct", "rejected", "audited",
                           "audit_agreed", "drained", "fed", "window")}
    known = {"job", "state", "labels", "threshold", "created", "finished", "audit", *number}
    return JobStatus(job=raw.get("job", "?"), state=raw.get("state", "?"), labels=json.loads(raw.get("labels", "[]")),
                     threshold=float(raw.get("threshold") or 0), created=float(raw.get("created") or 0),
                     audit=float(raw.get("audit") or 0),
                     finished=float(raw["finished"]) if raw.get("finished") else None, feeder=bool(feeder),
                     extra={k: v for k, v in raw.items() if k not in known}, **number)

