"""Turn a corpus file into a recorded job and a stream of ``tier1`` tasks.

The whole file is validated first (``corpus.summarize``), so a bad line stops
the submit with nothing enqueued; then it is read a second time and sent chunk
by chunk, so the submitter never holds the corpus in memory, and only as fast as
workers answer (``window``), so the broker never holds it either. The label set
the job expects is fixed here, once, and travels with every chunk: a worker whose
model does not speak it refuses the chunk instead of writing wrong labels.

A job is bound to the bytes it was submitted with (``common.data.fingerprint``): the file is
opened once, hashed, and every pass reads that open file; the record keeps its size and digest,
and ``resume`` checks them on the file it opened before it queues anything, and again (hashing
the file once more) after, so that neither a name swapped in the record nor a file edited since
the submit puts other texts under the job's indices. No pass queues an index at or past the total.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from common.cascade import validate_audit_rate, validate_threshold
from common.queue.celery_app import send_chunk
from common.queue.config import DEFAULT_AUDIT_RATE, DEFAULT_WINDOW, resolve_chunk_size, validate_chunk_size
from common.data.batches import batched
from common.data.corpus import CorpusSpec, CorpusSummary, Item, read_corpus, summarize
from common.data.fingerprint import Fingerprint, PinnedFile
from common.data.records import detect_format
from common.errors import ConfigError, DataError, Interrupted, JobError, ServiceUnavailable, first_line
from common.queue import calibration
from common.queue.broker import settled_in_broker
from common.queue.keys import new_job_id, validate_job_id
from common.labels import align_labels, model_labels
from common.revision import model_revision
from common.queue.messages import TASKS, Chunk, WorkItem
from common.queue.jobs import JobSpec, JobStatus
from common.queue.store import ResultStore
from common.queue.window import Window, validate_window

if TYPE_CHECKING:
    from common.target import QualityTarget
from common.queue.source import bound_source, reading, recorded, unchanged

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SubmitRequest:
    """Everything ``tango submit`` accepts, as one object."""

    path: str
    spec: CorpusSpec = CorpusSpec()
    threshold: float = 0.9
    chunk_size: int | None = None  # None: picked for the corpus (``resolve_chunk_size``)
    job_id: str | None = None
    labels: tuple[str, ...] = ()
    small: str | None = None
    big: str | None = None
    skip_invalid: bool = False  # record bad records as rejected and go on, instead of refusing the file
    audit: float = DEFAULT_AUDIT_RATE  # share of tier 1's answers that tier 2 also checks (0: none)
    window: int = DEFAULT_WINDOW  # most unanswered items of the job in the broker at once (0: no limit)
    spool: Path | None = None  # where ``path`` (a private copy of a stream) is moved once the job holds its id
    shown: str | None = None  # what errors call the input ("standard input" for a stream); None: its path
    target: "QualityTarget | None" = None  # a quality target instead of a threshold (``common.queue.calibration``)


@dataclass(frozen=True)
class Submitted:
    job: str
    total: int
    chunks: int
    labels: list[str]
    seconds: float
    truncated: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class LabelSource:
    labels: list[str]
    small: str = ""
    big: str = ""


@dataclass(frozen=True)
class JobPlan:
    """A submit request once every check has passed: what will be recorded, and how the corpus is read.
    Nothing is in Redis yet; building one is the only place a request is validated."""

    record: JobSpec
    spec: CorpusSpec
    summary: CorpusSummary
    skip_invalid: bool
    spool: Path | None

    @property
    def job(self) -> str:
        return self.record.job


def submit(store: ResultStore, app: Celery, request: SubmitRequest,
           progress: Callable[[int], None] | None = None, recorded: Callable[[str], None] | None = None) -> Submitted:
    """Validate, record and enqueue a job; returns once every chunk is queued, which for a corpus
    larger than the window is once workers have answered all but a window of it.

    Three steps, in this order: ``plan`` checks everything and reads the corpus once; the record
    claims the job id; ``_feed`` queues the corpus. A refusal in the first step leaves nothing behind.
    ``recorded`` hears the job id once its record exists, before a calibrating job waits for its sample.
    """
    start = time.perf_counter()
    with PinnedFile(request.path, request.shown) as corpus:
        plan = plan_job(store, request, corpus)
        store.create_job(plan.record)
        if recorded:
            recorded(plan.job)
        with _feeding(store, plan.job):
            chunks = _feed(store, app, plan, corpus, progress)
    record, summary = plan.record, plan.summary
    log.info("job %r: %d items in %d chunks submitted", record.job, record.total, chunks)
    return Submitted(record.job, record.total, chunks, record.labels, time.perf_counter() - start, summary.truncated,
                     summary.rejected)


def plan_job(store: ResultStore, request: SubmitRequest, corpus: PinnedFile) -> JobPlan:
    """Every check of a submit request, in one place, and the corpus's validating pass; records nothing."""
    job = validate_job_id(request.job_id, error=ConfigError) if request.job_id else new_job_id()
    requested = validate_chunk_size(request.chunk_size)
    audit = validate_audit_rate(request.audit)
    window = validate_window(request.window, requested or 1)
    source = resolve_labels(request, store)
    threshold = validate_threshold(1.0 if request.target else request.threshold, len(source.labels) or None,
                                   option="--threshold")
    spec = dataclasses.replace(request.spec, labels=tuple(source.labels),
                               fmt=detect_format(request.path, request.spec.fmt))
    digest = corpus.fingerprint()
    with corpus.naming():
        summary = summarize(corpus.path, spec, skip_invalid=request.skip_invalid)
        plan = calibration.plan(request.target, job, (request.small, request.big), source.labels, summary.items,
                                lambda: read_corpus(corpus.path, spec, _skip if request.skip_invalid else None)
                                ) if request.target else None
    record = JobSpec(job=job, total=summary.items, labels=source.labels, threshold=threshold,
                     chunk_size=resolve_chunk_size(requested, summary.items, window),
                     source=str(request.spool or Path(request.path).resolve()), source_size=digest.size,
                     source_sha256=digest.sha256, small=source.small, big=source.big,
                     small_revision=model_revision(source.small) or "", big_revision=model_revision(source.big) or "",
                     labelled=summary.labelled, truncated=summary.truncated, rejected=summary.rejected, audit=audit,
                     window=window,
                     corpus=json.dumps({**dataclasses.asdict(spec), "skip_invalid": request.skip_invalid}),
                     phase=calibration.CALIBRATING if plan and plan.size else "",
                     calibration=plan.to_json() if plan else "")
    return JobPlan(record, spec, summary, request.skip_invalid, request.spool)


def _feed(store: ResultStore, app: Celery, plan: JobPlan, corpus: PinnedFile,
          progress: Callable[[int], None] | None) -> int:
    """Queue a recorded job's corpus, as workers make room in its window; returns the chunks sent. A job
    with a quality target queues its sample first, waits for its threshold, then queues the rest."""
    record, summary = plan.record, plan.summary
    if plan.spool:  # the id is this job's now: no other job's spool can be under its name
        os.replace(corpus.name, plan.spool)
    store.add_rejects(record.job, [(error.line or 0, str(corpus.named(error))) for error in summary.rejects])

    def items() -> Iterator[Item]:
        found = read_corpus(corpus.path, plan.spec, _skip if plan.skip_invalid else None, summary.duplicate_lines)
        return corpus.reading(islice(found, record.total))

    threshold, keep, phase, chunks = record.threshold, None, "", 0
    if record.phase == calibration.CALIBRATING:  # the sample alone first, then its threshold fixed
        sample = calibration.SampleMembers(record.job, json.loads(record.calibration)["cutoff"])
        chunks, _ = enqueue(store, app, record.job, _sample_chunks(items(), record.job, record.chunk_size,
                                                                   record.labels, sample),
                            progress, Window(store, record.job, record.window, calibration.CALIBRATING))
        threshold = calibration.await_threshold(store, record.job)
        if threshold is None:  # the job ended meanwhile
            return chunks
        keep, phase = (lambda index: index not in sample), calibration.CERTIFIED
    sent, _ = enqueue(store, app, record.job, chunked(items(), record.job, record.chunk_size, threshold,
                                                      record.labels, record.audit, keep=keep),
                      progress, Window(store, record.job, record.window, phase))
    unchanged(store, record.job, corpus, Fingerprint(record.source_size, record.source_sha256))
    store.mark_submitted(record.job)
    return chunks + sent


@contextlib.contextmanager
def _feeding(store: ResultStore, job: str) -> Iterator[None]:
    """A recorded job's feeding; whatever stops it early (a bug, a lost broker, Ctrl-C) gives the feeder's
    lease up at once, so the job reads as one whose submit is gone, which ``resume`` and the workers'
    sweep complete, rather than as one still being fed until the lease lapses. Nothing it accepted is lost."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            store.end_feeding(job)
        raise


@dataclass(frozen=True)
class Resumed:
    job: str
    chunks: int
    items: int


def resume(store: ResultStore, app: Celery, job: str, window: int = 0, limit: int = 0, start: int = 0) -> Resumed:
    """Send every item of a running job that has no result yet again.

    The result store, not the broker, is the record of what is done: kombu can
    lose a message that a worker popped just as Redis crashed. Re-reading the
    job's source the way submit read it and re-sending the unanswered items is
    always safe (writes are idempotent); it costs duplicate work at most. What
    is answered comes from the job's answered bitmap, which also covers the
    items ``tango results --drain`` deleted, so those are never sent again. With a ``window`` it
    feeds the rest of a job whose submit stopped early as workers answer, as submit would have;
    without one it sends them at once. A ``limit`` sends at most about that many (whole chunks) and
    returns: the workers' sweep, which must not block, feeds a job that lost its submit one window
    per sweep this way, and the job stays ``submitting`` while items remain unsent. ``start`` leaves
    the items before it alone: the sweep feeds such a job on from what its submit already queued. A job
    still calibrating gets only its sample's items; once they are all answered, its threshold is fixed
    here (``calibration.finish``) and the rest follows; without a ``limit`` it waits for the sample first.
    """
    status = store.status(job)
    if status.is_final:
        raise JobError(f"job {job!r} is {status.state}: nothing to resume")
    sampling = status.extra.get("phase") == calibration.CALIBRATING
    if sampling and calibration.finish(store, status) is not None:  # its sample is answered: the rest is next
        status, sampling, start = store.status(job), False, 0
    path, spec, skip_invalid = reading(status)
    answered = store.answered(job)
    size = int(status.extra.get("chunk_size") or 1)
    expected = recorded(status, path)
    with bound_source(job, path, expected) as corpus:
        items = corpus.reading(islice(read_corpus(corpus.path, spec, _skip if skip_invalid else None), status.total))
        source = (_sample_chunks(items, job, size, status.labels,
                                 calibration.SampleMembers(job, calibration.JobCalibration.of(status).cutoff))
                  if sampling else chunked(items, job, size, status.threshold, status.labels, status.audit))
        missing = (dataclasses.replace(chunk, items=tuple(i for i in chunk.items
                                                          if i.index >= start and i.index not in answered))
                   for chunk in source)
        unsent = status.total - start - answered.count_from(start)
        chunks, sent = enqueue(store, app, job, _up_to((chunk for chunk in missing if chunk.items), limit),
                               window=Window(store, job, validate_window(window, size), status.extra.get("phase", "")))
        unchanged(store, job, corpus, expected)
    log.info("job %r: resent %d of its %d unanswered items in %d chunks", job, sent, unsent, chunks)
    if sampling and not limit:  # a feeder that may wait (``tango resume``): it sees the calibration through
        if calibration.await_threshold(store, job) is None:
            return Resumed(job, chunks, sent)
        more = resume(store, app, job, window)
        return Resumed(job, chunks + more.chunks, sent + more.items)
    if not sampling and sent >= unsent:
        store.mark_submitted(job)  # a submit cut short (lost broker, killed) left it "submitting"
    else:
        store.end_feeding(job)
    return Resumed(job, chunks, sent)


def _up_to(chunks: Iterator[Chunk], limit: int) -> Iterator[Chunk]:
    """Chunks until about ``limit`` items are out (0: all of them)."""
    items = 0
    for chunk in chunks:
        if limit and items >= limit:
            return
        yield chunk
        items += len(chunk.items)


def stalled(store: ResultStore, before: JobStatus, now: JobStatus) -> bool:
    """A running job (or one whose submit is gone) that did not move between two looks while no message of
    it is queued or held: nothing will ever answer its remaining items unless they are sent again. Other
    jobs' messages do not matter, and no message body is read (``common.queue.broker``)."""
    if now.is_final or now.answered != before.answered or now.being_fed:
        return False
    return settled_in_broker(store.client, [now.job])[now.job] == 0


def enqueue(store: ResultStore, app: Celery, job: str, chunks: Iterator[Chunk],
            progress: Callable[[int], None] | None = None, window: Window | None = None) -> tuple[int, int]:
    """Send chunks to their tier's queue over one producer, each once the window has room for it; returns how
    many chunks and items were sent (fewer than given when the job ended meanwhile)."""
    sent = items = 0
    window = window or Window(store, job, 0)
    try:
        with app.producer_or_acquire() as producer:
            for chunk in chunks:
                if not window.admit(len(chunk.items)):
                    break
                send_chunk(app, TASKS[chunk.tier], chunk, producer)
                sent, items = sent + 1, items + len(chunk.items)
                window.queued(chunk.items[-1].index + 1)
                if progress:
                    progress(len(chunk.items))
            window.record()
    except (OperationalError, redis.ConnectionError, redis.TimeoutError) as exc:  # the window reads Redis too
        raise ServiceUnavailable(f"lost the broker at {store.url} after {sent} chunks of job {job!r}: "
                                 f"{first_line(exc)}; run `tango resume {job}` once it is back") from None
    except KeyboardInterrupt:
        with contextlib.suppress(redis.RedisError):
            store.end_feeding(job)  # said gone at once, not a lease later
        raise Interrupted(f"interrupted after queueing {sent} chunks of job {job!r}; `tango resume {job}` "
                          "queues the rest") from None
    return sent, items


def _skip(error: DataError) -> None:
    """Drop a bad record on the sending pass (``summarize`` counted and recorded it)."""


def chunked(items: Iterator[Item], job: str, size: int, threshold: float, labels: list[str],
            audit: float = 0.0, keep: Callable[[int], bool] | None = None, calibrate: bool = False) -> Iterator[Chunk]:
    """Group items into chunks; an item's index is its position among the valid items (and
    so, with the job id, picks whether it is audited). ``keep`` leaves the items it refuses out of the
    chunks (their indices stay): a calibrating job's sample, then its rest, each chunked alone. At
    threshold 1.0 no tier-1 answer can stand, so outside a calibration the chunks go to tier 2 directly:
    tier 1 would only score them to forward them all."""
    tier = 2 if threshold >= 1.0 and not calibrate else 1
    work = (WorkItem(index, item.id, item.text, item.text_pair, item.label) for index, item in enumerate(items)
            if keep is None or keep(index))
    for number, batch in enumerate(batched(work, size)):
        yield Chunk(job, number, tier, threshold, tuple(labels), tuple(batch), audit=audit, calibrate=calibrate)


def _sample_chunks(items: Iterator[Item], job: str, size: int, labels: list[str],
                   sample: calibration.SampleMembers) -> Iterator[Chunk]:
    """A calibrating job's sample alone, in calibration chunks (both tiers answer every item)."""
    return chunked(items, job, size, 1.0, labels, keep=sample.__contains__, calibrate=True)


def resolve_labels(request: SubmitRequest, store: ResultStore) -> LabelSource:
    """The job's label set: ``--labels``, else the models' configs, else what running workers serve,
    else none yet (the first worker to take a chunk fixes it; gold labels cannot be checked at submit
    then, and one that names no label of the job counts as a miss in its accuracy)."""
    if request.labels:
        labels = [name.strip() for name in request.labels if name.strip()]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ConfigError(f"--labels needs at least 2 distinct names, got {list(request.labels)}")
        return LabelSource(labels, request.small or "", request.big or "")
    if request.small or request.big:
        small = model_labels(request.small) if request.small else None
        big = model_labels(request.big) if request.big else None
        return LabelSource(_merge(small, big), request.small or "", request.big or "")
    small, small_models = _advertised(store, 1)
    big, big_models = _advertised(store, 2)
    return LabelSource(_merge(small, big), small_models, big_models)  # none up: the first worker fixes them


def _merge(small: list[str] | None, big: list[str] | None) -> list[str]:
    if small is not None and big is not None:
        return align_labels(small, big).labels
    return list(small or big or [])


def _advertised(store: ResultStore, tier: int) -> tuple[list[str] | None, str]:
    workers = store.advertised(tier)
    sets = {tuple(info.get("labels", [])) for info in workers.values()}
    if len(sets) > 1:
        raise ConfigError(f"the running tier-{tier} workers serve different label sets {sorted(sets)}; "
                          "pass --labels to choose")
    models = sorted({str(info.get("model", "")) for info in workers.values()})
    return (list(sets.pop()) if sets else None), ",".join(models)
