"""A job bound to the bytes it was submitted with.

Submit opens the corpus once, hashes it, and records its size and digest in the job. Every later
pass (``resume``, the workers' sweep) reads the file it opened and checks those first, and hashes
it again after queueing. So neither a name swapped in the job's record nor a file edited since the
submit can put other texts under the job's indices: whoever can write Redis can name a file, but
cannot give the digest of one whose bytes they do not already know.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Iterator

from common.data.corpus import CorpusSpec
from common.data.fingerprint import Fingerprint, PinnedFile
from common.data.records import detect_format
from common.errors import DataError, JobError
from common.queue.jobs import JobStatus
from common.queue.store import ResultStore


def reading(status: JobStatus) -> tuple[str, CorpusSpec, bool]:
    """The job's source and how submit read it, from its record."""
    job, path = status.job, status.extra.get("source", "")
    try:
        corpus = json.loads(status.extra.get("corpus") or "{}")
        skip_invalid = bool(corpus.pop("skip_invalid", False))
        spec = CorpusSpec(**{**corpus, "labels": tuple(corpus.get("labels") or ())})  # JSON kept them as a list
        return path, dataclasses.replace(spec, fmt=detect_format(path, spec.fmt)), skip_invalid
    except (ValueError, TypeError, AttributeError, DataError):
        raise JobError(f"job {job!r} has no usable record of how to read its source {path!r}; "
                       "submit it again") from None


def recorded(status: JobStatus, path: str) -> Fingerprint:
    """The size and digest the job's source had at submit.

    A job without them (recorded by an older tango, or with them deleted from Redis) is refused,
    not resumed with a warning: whoever can write Redis could otherwise drop them to lift the check.
    """
    size, digest = status.extra.get("source_size", ""), status.extra.get("source_sha256", "")
    if not size.isdigit() or len(digest) != 64:
        raise JobError(f"job {status.job!r} has no record of the size and digest of its source {path} (an older "
                       "tango recorded it), so nothing shows that the file is the one it was submitted from; "
                       "submit it again")
    return Fingerprint(int(size), digest)


@contextlib.contextmanager
def bound_source(job: str, path: str, expected: Fingerprint) -> Iterator[PinnedFile]:
    """The job's source, opened and found to hold the bytes it was submitted with, before anything of it
    is read for queueing; refused in one line naming the job and the file otherwise."""
    try:
        corpus = PinnedFile(path)
    except DataError as exc:
        raise JobError(f"job {job!r}: {exc}") from None
    with corpus:
        size = corpus.size()
        if size != expected.size or corpus.fingerprint() != expected:
            raise JobError(f"job {job!r}: {path} is not the file it was submitted from ({size} bytes now, "
                           f"recorded {expected}): refusing to queue any of it")
        yield corpus


def unchanged(store: ResultStore, job: str, corpus: PinnedFile, expected: Fingerprint) -> None:
    """The file read for queueing still holds the job's bytes: an edit in place while it was read (which
    takes write access to the file) could have put other texts under some indices, so the job is cancelled."""
    found = corpus.fingerprint()
    if found != expected:
        ended = "cancelled it" if store.cancel(job) else "it had already ended"
        raise JobError(f"job {job!r}: {corpus.name} changed while it was read for queueing ({found}, recorded "
                       f"{expected}); {ended}, since items queued from it may not be the ones recorded: "
                       "submit it again")
