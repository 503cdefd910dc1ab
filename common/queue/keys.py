"""Every Redis key tango uses, and the job-id rule that keeps jobs apart.

All keys of one job share the hash tag ``{JOB}`` so they land in one slot on
Redis Cluster and one Lua script may touch them all. A job id is checked
against a strict pattern before it is ever put into a key, so no id can name
another job's keys.
"""
from __future__ import annotations

import re
import secrets
import time

from common.errors import JobError, TangoError

PREFIX = "tango"
JOBS_INDEX = f"{PREFIX}:jobs"  # sorted set: job id -> created time
# sorted set: the jobs not known to have ended (id -> created time), so a sweep reads those alone; a job
# leaves it when a reader finds it ended. ACTIVE_INDEXED marks that jobs from before it were added once.
ACTIVE_INDEX = f"{PREFIX}:active"
ACTIVE_INDEXED = f"{PREFIX}:active:indexed"
JOB_HEADER = "tango_job"  # the message header naming the job a chunk belongs to (``send_chunk`` sets it)
UNACKED = "unacked"  # kombu's hash of the messages workers hold (its default ``unacked_key``)
CLAIMS = f"{PREFIX}:claims"  # counts the broker's claims, so each delivery of a message has a tag of its own
SWEEPER_LOCK = f"{PREFIX}:sweeper"  # held by the one worker sweeping for stalled jobs this interval
# the broker's own counts (``common.queue.transport``), so that nothing reads message bodies to learn them:
IN_BROKER = f"{PREFIX}:in-broker"  # hash: job -> its messages in the broker, queued or held by a worker
HELD = f"{PREFIX}:held"  # hash: delivery tag of a held message -> "QUEUE TAB JOB" (JOB empty when not ours)
HELD_BY_QUEUE = f"{PREFIX}:held-by-queue"  # hash: queue -> messages taken from it and not yet acknowledged
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_job_id(job: str, error: type[TangoError] = JobError) -> str:
    """``job`` if it is 1-64 letters, digits, ``_ . -`` (starting alphanumeric); else ``error``."""
    if not isinstance(job, str) or not _JOB_ID.match(job):
        raise error(f"invalid job id {job!r}: use 1-64 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit")
    return job


def new_job_id() -> str:
    """A sortable, unguessable id: UTC time plus random hex."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def meta_key(job: str) -> str:
    """Hash: the job's settings, totals, counters and state."""
    return _job_key(job, "meta")


def results_key(job: str) -> str:
    """Hash: item index -> compact JSON result."""
    return _job_key(job, "results")


def failures_key(job: str) -> str:
    """Hash: item index -> JSON failure (id, tier, reason)."""
    return _job_key(job, "failures")


def answered_key(job: str) -> str:
    """String used as a bitmap: bit i is set once item i has a result or a failure. It outlives
    ``tango results --drain``, which deletes exported results, so a redelivered chunk still finds
    its items answered and ``resume`` never sends them again (1 bit per item)."""
    return _job_key(job, "answered")


def attempts_key(job: str) -> str:
    """Hash: ``TIER:CHUNK`` -> how many times a worker started that chunk (the attempt cap)."""
    return _job_key(job, "attempts")


def rejected_key(job: str) -> str:
    """Hash: input line -> why ``submit --skip-invalid`` left that record out."""
    return _job_key(job, "rejected")


def audits_key(job: str) -> str:
    """Hash: item index -> JSON of tier 2's check of tier 1's answer (an audit outcome)."""
    return _job_key(job, "audits")


def audited_key(job: str) -> str:
    """String used as a bitmap: bit i is set once tier 2's check of item i is counted. Like the
    answered bitmap it outlives ``--drain``, which deletes the audit records, so a redelivered or
    late audit chunk still counts each check once (1 bit per item)."""
    return _job_key(job, "audited")


def workers_key(tier: int) -> str:
    """Hash: ``host:pid`` -> JSON of the model a worker of ``tier`` serves, with ``alive_until`` (Redis's
    clock), which the worker's heartbeat moves on: an entry past it is a worker that died without a word."""
    return f"{PREFIX}:workers:tier{tier}"


def _job_key(job: str, name: str) -> str:
    return f"{PREFIX}:{{{validate_job_id(job)}}}:{name}"


def feeder_key(job: str) -> str:
    """String with a time to live: present while a feeder (``submit`` or ``resume``) of the job is
    alive, which refreshes it. A job still ``submitting`` without it has lost its feeder."""
    return _job_key(job, "feeder")


def job_keys(job: str) -> list[str]:
    """Every key of a job; the first five are the result script's KEYS, in that order."""
    return [meta_key(job), results_key(job), failures_key(job), answered_key(job), attempts_key(job),
            rejected_key(job), audits_key(job), feeder_key(job), audited_key(job)]
