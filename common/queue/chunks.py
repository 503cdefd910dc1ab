"""One chunk's life in a worker, top to bottom: begin, check, score, decide, send on, store.

The store counts the start (the attempt cap) and says whether the job still
wants the chunk; the model scores the texts (an item that makes it raise is
recorded as failed, its neighbours go on); the tier's pure decision function
turns probabilities into records and forwarded items; forwarded items leave as
one tier-2 task *before* the records are written and the task returns (which
is when Celery acknowledges it), so no item can be lost between the tiers; the
records go through the store's idempotent script, so a redelivered chunk
changes nothing. Metrics hang on as hooks.

A calibration chunk's triples (tier 2's, ``decisions``) are stored before its results, so every
answered sample item has its triple when the job's threshold is certified from them.

Tier 1's audit sample leaves as a tier-2 task of its own, not inside the one
that carries the unsure items: those are then batched exactly as without an
audit (so their scores stay bit for bit those of ``tango label``), and each
task has its own attempt count. Tier 2's audit outcomes go through the store's
audit script. An audit item that fails is left out of the sample, never
recorded as failed: its answer is tier 1's, already final.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol, Sequence

import redis
from kombu.exceptions import OperationalError

from common.data.batches import pair_texts
from common.errors import JobError, JobGoneError, LabelMismatchError, first_line
from common.queue.decisions import Decide, output_map
from common.queue.faults import Scorer, attempts_exhausted, item_probabilities, should_split
from common.queue.messages import Chunk, WorkItem
from common.queue.results import ResultRecord
from common.queue.store import ResultStore

log = logging.getLogger(__name__)

# Redis or the broker away: the task is given back whole, never turned into recorded failures
AWAY = (redis.ConnectionError, redis.TimeoutError, OperationalError)


class ChunkHooks(Protocol):
    """What observes a chunk's outcome (``common.queue.telemetry.WorkerMetrics``)."""

    def chunk(self, decided: int, forwarded: int) -> None: ...

    def failed(self, count: int) -> None: ...

    def audited(self, agreed: int, disagreed: int) -> None: ...


@dataclass
class ChunkProcessor:
    """Everything one worker process needs to take a chunk from message to stored results."""

    tier: int
    model: str  # the name recorded with every result
    model_labels: list[str]
    scorer: Scorer
    store: ResultStore
    decide: Decide
    send: Callable[[Chunk], None]  # to the queue of the chunk's tier
    max_attempts: int
    hooks: Sequence[ChunkHooks] = ()
    refunds: set[tuple[str, str]] = field(default_factory=set)  # starts that ended because Redis was away

    def process(self, chunk: Chunk) -> dict:
        """Run one chunk; returns a small JSON summary (logged by Celery, never stored)."""
        self._pay_refunds()
        state, attempt = self.store.begin(chunk.job, self.tier, chunk.name)
        try:
            return self._started(chunk, state, attempt)
        except AWAY:
            self.refunds.add((chunk.job, chunk.name))  # this start proves nothing about the chunk
            raise

    def _started(self, chunk: Chunk, state: str | None, attempt: int) -> dict:
        if state is None:
            raise JobGoneError(f"the records of job {chunk.job!r} are gone")
        if state == "cancelled":
            log.info("job %r chunk %s skipped: job cancelled", chunk.job, chunk.name)
            return {"skipped": "cancelled"}
        if should_split(attempt, len(chunk.items)):
            return self._split(chunk, attempt)
        exhausted = attempts_exhausted(self.tier, attempt, self.max_attempts)
        if exhausted:
            return self.fail(chunk, exhausted)
        start = time.perf_counter()
        if not chunk.labels:  # submitted before any worker was up: the first one fixes the job's labels
            labels = self.store.claim_labels(chunk.job, self.model_labels)
            if labels is None:
                raise JobGoneError(f"the records of job {chunk.job!r} are gone")
            chunk = replace(chunk, labels=tuple(labels))
        try:
            outputs = output_map(chunk.labels, self.model_labels)
        except LabelMismatchError as exc:
            return self.fail(chunk, f"tier {self.tier} model {self.model} does not fit the job: {exc}")
        texts = [item.text for item in chunk.items]
        pairs = pair_texts(chunk.items)
        probs, ok, errors = item_probabilities(self.scorer, texts, pairs)
        if errors:
            self._fail_items(chunk, errors)
            if not ok:
                return {"job": chunk.job, "chunk": chunk.name, "failed": len(errors)}
            chunk = replace(chunk, items=tuple(chunk.items[n] for n in ok))
        decision = self.decide(chunk, probs, outputs, self.model)
        for items in (decision.forward, decision.audit):
            if items:
                self.send(chunk.forward(items))
        if decision.triples:  # before the results: an answered calibration item always has its triple
            self.store.record_calibration(chunk.job, decision.triples)
        added = self._write(chunk.job, decision.entries)
        self._audit(chunk.job, decision.outcomes)
        agreed = sum(outcome.agrees for outcome in decision.outcomes)
        for hook in self.hooks:
            hook.chunk(len(decision.entries), len(decision.forward))
            if decision.outcomes:
                hook.audited(agreed, len(decision.outcomes) - agreed)
        log.info("job %r chunk %s: %d items, %d decided (%d new), %d sent on, %d sent to audit, %d audited, "
                 "%.3f s", chunk.job, chunk.name, len(chunk.items), len(decision.entries), added,
                 len(decision.forward), len(decision.audit), len(decision.outcomes), time.perf_counter() - start)
        return {"job": chunk.job, "chunk": chunk.name, "decided": len(decision.entries),
                "forwarded": len(decision.forward), "audit": len(decision.audit), "audited": len(decision.outcomes)}

    def fail(self, chunk: Chunk, reason: str) -> dict:
        """Record every item of the chunk as failed with ``reason``."""
        log.error("job %r chunk %s failed: %s", chunk.job, chunk.name, reason)
        self._record_failures(chunk, [(item, reason) for item in chunk.items])
        return {"job": chunk.job, "chunk": chunk.name, "failed": reason}

    def _split(self, chunk: Chunk, attempt: int) -> dict:
        """A chunk whose process died: run its halves as tasks of their own, so that the item that
        kills the process ends up alone and fails alone. They are sent before this task is acknowledged."""
        halves = chunk.halves()
        for half in halves:
            self.send(half)
        log.warning("job %r chunk %s: its process died on %d start(s); split into %s (%d items) and %s (%d items)",
                    chunk.job, chunk.name, attempt - 1, halves[0].name, len(halves[0].items), halves[1].name,
                    len(halves[1].items))
        return {"job": chunk.job, "chunk": chunk.name, "split": [half.name for half in halves]}

    def _pay_refunds(self) -> None:
        while self.refunds:
            job, name = next(iter(self.refunds))
            self.store.refund(job, self.tier, name)
            self.refunds.discard((job, name))

    def _fail_items(self, chunk: Chunk, errors: dict[int, str]) -> None:
        """Record the items the model raised on (by position in the chunk), each with its reason."""
        log.error("job %r chunk %s: tier %d model failed on %d of %d items (first: %s)", chunk.job, chunk.name,
                  self.tier, len(errors), len(chunk.items), next(iter(errors.values())))
        self._record_failures(chunk, [(chunk.items[n], f"tier {self.tier} model error: {reason}")
                                      for n, reason in errors.items()])

    def _record_failures(self, chunk: Chunk, failures: list[tuple[WorkItem, str]]) -> None:
        """Store items as failed, each with its reason; audit items only drop out of the sample, since
        tier 1 answered them (a failure written first would even block tier 1's answer)."""
        entries = [(item.index, ResultRecord.failed(item.id, self.tier, reason), None)
                   for item, reason in failures if item.audit is None]
        for hook in self.hooks:
            hook.failed(len(entries))
        self._write(chunk.job, entries)

    def _write(self, job: str, entries: list) -> int:
        """Store the entries; returns how many were new. A write that fails for any reason but Redis being
        away (which gives the task back) or the job being gone is retried item by item, and an item whose
        record cannot be stored is stored as failed with the reason: never a task acknowledged with its
        items unanswered, which would leave the job running for ever."""
        try:
            return self.store.write(job, entries)
        except (*AWAY, JobError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the store refused, each item must still end
            log.error("job %r: storing %d records failed (%s); storing them one by one", job, len(entries),
                      first_line(exc))
        return sum(self._write_one(job, entry) for entry in entries)

    def _write_one(self, job: str, entry: tuple) -> int:
        index, record, correct = entry
        try:
            return self.store.write(job, [entry])
        except (*AWAY, JobError):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as this item's failure below
            reason = f"tier {self.tier}: its result could not be stored: {type(exc).__name__}: {first_line(exc)}"
        try:
            return self.store.write(job, [(index, ResultRecord.failed(record.id, self.tier, reason), None)])
        except (*AWAY, JobError):
            raise
        except Exception as exc:  # noqa: BLE001 - nothing about this item can be stored (its index, say)
            log.error("job %r item %d: neither its record nor its failure could be stored: %s", job, index,
                      first_line(exc))
            return 0

    def _audit(self, job: str, outcomes: list) -> None:
        """Store tier 2's checks; one that cannot be stored is only left out: an audit answers nothing."""
        try:
            self.store.audit(job, outcomes)
        except (*AWAY, JobError):
            raise
        except Exception as exc:  # noqa: BLE001 - the items' answers are stored; only the sample shrinks
            log.error("job %r: %d audit outcomes could not be stored: %s", job, len(outcomes), first_line(exc))
