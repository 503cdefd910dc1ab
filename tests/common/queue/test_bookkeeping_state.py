"""A stateful property test of a job's bookkeeping on a real redis-server.

Hypothesis drives the real ``ResultStore``, ``Exporter``, ``submit``/``resume`` and ``StallSweeper``
through random interleavings of chunk writes (tier 1, tier 2, failures), redeliveries, audits,
forged writes, partial and following exports with and without drain (with chunks landing while an
export runs), resumes, sweeps, cancels and purges, and compares Redis with a plain model of the job
after every step. What submit, resume and the sweep would queue is captured by a stand-in for the
Celery app (``send_chunk`` calls its ``send_task``), and the machine delivers those chunks itself, so
no worker runs. Invariants: every index below the total ends with exactly one result or failure;
every exported line is the stored (first) result; an export leaves out no item that was answered
when it began unless it was drained before; nothing an export did not write is drained; nothing at
or past the total is stored; the counters equal the answered bitmap's popcount.

CI runs a bounded number of examples; ``TANGO_STATEFUL_EXAMPLES=2000`` runs a longer search.
"""
from __future__ import annotations

import contextlib
import io
from collections import Counter
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test

from common.errors import JobError, JobGoneError
from common.queue.config import ClusterSettings
from common.queue.export import Exporter
from common.queue.keys import SWEEPER_LOCK, answered_key, audits_key, failures_key, job_keys, meta_key, results_key
from common.queue.messages import Chunk
from common.queue.results import AuditOutcome, ResultRecord, TextSink
from common.queue.store import FINAL_STATES, ResultStore
from common.queue.submission import SubmitRequest, resume, submit
from common.queue.sweeper import StallSweeper

JOB = "state"
LABELS = ("negative", "positive")
EXAMPLES = int(os.environ.get("TANGO_STATEFUL_EXAMPLES", "60"))
STEPS = int(os.environ.get("TANGO_STATEFUL_STEPS", "30"))


class CapturingApp:
    """Stands in for the Celery app where ``send_chunk`` publishes: keeps every chunk it is given."""

    def __init__(self) -> None:
        self.sent: list[Chunk] = []

    @contextlib.contextmanager
    def producer_or_acquire(self):
        yield None

    def send_task(self, name: str, args: list, **options) -> None:
        self.sent.append(Chunk.decode(json.loads(json.dumps(args[0]))))  # only JSON crosses the queue

    def take(self) -> list[Chunk]:
        sent, self.sent = self.sent, []
        return sent


class LandingSink(TextSink):
    """A text sink on memory that calls ``land`` when it syncs or closes: chunks written into Redis
    between an export's read and its drain."""

    def __init__(self, land) -> None:
        super().__init__(io.StringIO())
        self.land = land

    def sync(self) -> None:
        super().sync()
        self.land()

    def close(self) -> int:
        written = super().close()
        self.land()
        return written

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


@dataclass
class Model:
    """A job as the README promises it: the first write of each item is its answer."""

    total: int
    state: str = "running"
    final: dict[int, ResultRecord] = field(default_factory=dict)
    audited: dict[int, bool] = field(default_factory=dict)
    drained: int = 0
    drained_out: dict[int, str] = field(default_factory=dict)  # what the draining exports wrote, by index
    lost: set[int] = field(default_factory=set)  # drained unwritten (already reported where it happened)

    @property
    def active(self) -> bool:
        return self.state in ("running", "submitting")

    def unanswered(self) -> set[int]:
        return set(range(self.total)) - set(self.final)

    def answer(self, entries: list[tuple[int, ResultRecord, None]]) -> int:
        new = 0
        for index, record, _ in entries:
            if index not in self.final:
                self.final[index], new = record, new + 1
        if new and self.active and len(self.final) == self.total:
            self.state = "failed" if any(r.error for r in self.final.values()) else "done"
        return new


class BookkeepingMachine(RuleBasedStateMachine):
    url = ""
    tally: Counter = Counter()  # what the run exercised, printed at its end (``pytest -s``)

    def __init__(self) -> None:
        super().__init__()
        self.store = ResultStore.open(ClusterSettings(redis_url=self.url))
        self.store.client.flushdb()
        self.app = CapturingApp()
        self.sweeper = StallSweeper(self.store, self.app, interval=1.0, owner="state-machine")
        self.root = tempfile.mkdtemp(prefix="tango-state-")
        self.pending: list[Chunk] = []
        self.delivered: list[Chunk] = []
        self.model = Model(0)
        self.sweeps: list[set[int]] = []  # what each sweep since the last write sent

    # -- the job and its chunks ------------------------------------------------
    @initialize(total=st.integers(1, 20), size=st.integers(1, 6))
    def submit_job(self, total: int, size: int) -> None:
        path = os.path.join(self.root, "in.jsonl")
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps({"id": f"id{i}", "text": f"text {i}"}) + "\n" for i in range(total))
        done = submit(self.store, self.app, SubmitRequest(path=path, chunk_size=size, job_id=JOB, labels=LABELS,
                                                          audit=0.0, window=0))
        self.model = Model(total)
        self.tally["jobs"] += 1
        self.queue(self.app.take(), expected=set(range(total)))
        assert (done.total, done.chunks) == (total, len(self.pending))

    def queue(self, chunks: list[Chunk], expected: set[int] | None = None) -> set[int]:
        """Keep chunks a feeder sent; each must name items of the job with their own texts."""
        sent = [item.index for chunk in chunks for item in chunk.items]
        assert len(sent) == len(set(sent)), "a feeder sent an item twice"
        for chunk in chunks:
            assert chunk.job == JOB and chunk.tier == 1
            for item in chunk.items:
                assert 0 <= item.index < self.model.total and (item.id, item.text) == (f"id{item.index}",
                                                                                          f"text {item.index}")
        if expected is not None:
            assert set(sent) == expected
        self.pending.extend(chunks)
        return set(sent)

    def deliver(self, data, chunk: Chunk) -> None:
        """A worker runs the chunk: each item answered, sent on to tier 2 (tier 1 only), or failed."""
        entries, forward = [], []
        choices = ["answer", "forward", "fail"] if chunk.tier == 1 else ["answer", "fail"]
        for item in chunk.items:
            outcome = data.draw(st.sampled_from(choices), label=f"item {item.index}")
            if outcome == "forward":
                forward.append(item)
            elif outcome == "fail":
                entries.append((item.index, ResultRecord.failed(item.id, chunk.tier, "model error: boom"), None))
            else:
                label = data.draw(st.sampled_from(LABELS), label="label")
                entries.append((item.index, ResultRecord(item.id, label, 0.75, chunk.tier, f"m{chunk.tier}"), None))
        if forward:
            self.pending.append(chunk.forward(forward))
        self.delivered.append(chunk)
        self.write(entries)

    def write(self, entries: list) -> None:
        try:
            added = self.store.write(JOB, entries)
        except JobGoneError:
            assert self.model.state == "purged" and entries
            return
        assert self.model.state != "purged" or not entries
        assert added == self.model.answer(entries), "a write counted other items than the new ones"
        if added:
            self.sweeps = []
        self.tally["writes"] += 1

    def deliver_pending(self, data) -> bool:
        if not self.pending:
            return False
        self.deliver(data, self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1), label="chunk")))
        return True

    def land(self, data) -> None:
        """While an export runs: nothing lands, or a queued chunk, often the one holding the first
        unanswered item (the item an export skipped, if one did)."""
        how = data.draw(st.sampled_from(["nothing", "first", "any"]), label="land")
        if how == "first" and self.pending:
            first = min(item.index for chunk in self.pending for item in chunk.items)
            chunk = next(chunk for chunk in self.pending if first in {item.index for item in chunk.items})
            self.pending.remove(chunk)
            self.deliver(data, chunk)
        elif how == "any":
            self.deliver_pending(data)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def run_a_chunk(self, data) -> None:
        self.deliver_pending(data)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver_a_chunk(self, data) -> None:
        """A late ack or a crash after the write: the chunk runs again, possibly with other outcomes."""
        self.deliver(data, data.draw(st.sampled_from(self.delivered), label="redelivered"))

    @rule(data=st.data())
    def audit_some_items(self, data) -> None:
        """Tier 2's checks; they may land before tier 1's write, after the job ended, after a drain."""
        indices = data.draw(st.lists(st.integers(0, self.model.total - 1), min_size=1, max_size=4, unique=True))
        outcomes = [AuditOutcome(i, "positive", data.draw(st.sampled_from(LABELS))) for i in indices]
        try:
            added = self.store.audit(JOB, outcomes)
        except JobGoneError:
            assert self.model.state == "purged"
            return
        new = [o for o in outcomes if o.index not in self.model.audited]
        assert added == len(new), "an audit counted an item twice, or missed a new one"
        self.model.audited.update((o.index, o.agrees) for o in new)

    @rule(data=st.data(), past=st.integers(0, 5), huge=st.booleans())
    def forge_a_write(self, data, past: int, huge: bool) -> None:
        """A chunk naming an item at or past the total: refused whole, with its valid items."""
        bad = self.model.total + past + (3_000_000_000 if huge else 0)
        valid = data.draw(st.lists(st.integers(0, self.model.total - 1), max_size=3, unique=True))
        entries = [(i, ResultRecord(f"id{i}", "positive", 0.5, 1, "forged"), None) for i in [*valid, bad]]
        with pytest.raises(JobError):
            self.store.write(JOB, entries)

    # -- feeders -----------------------------------------------------------------
    @rule()
    def resume_the_job(self) -> None:
        try:
            done = resume(self.store, self.app, JOB)
        except JobError:
            assert not self.model.active, "resume refused an active job"
            assert not self.app.take()
            return
        assert self.model.active
        sent = self.queue(self.app.take(), expected=self.model.unanswered())
        assert done.items == len(sent)

    @rule()
    def sweep(self) -> None:
        """The workers' stall sweep: sends only unanswered items, and all of them once a job has not
        moved for two sweeps (nothing is queued or held, as the stand-in app keeps the chunks)."""
        self.store.client.delete(SWEEPER_LOCK)
        self.sweeper.sweep()
        sent = self.queue(self.app.take())
        self.tally["sweeps that resent items"] += bool(sent)
        assert sent <= self.model.unanswered()
        self.sweeps.append(sent)
        if len(self.sweeps) >= 2 and self.model.active:
            assert set().union(*self.sweeps[-2:]) >= self.model.unanswered(), "a stalled job was not resumed"

    # -- the user ----------------------------------------------------------------
    @rule()
    def cancel(self) -> None:
        if self.model.state == "purged":
            with pytest.raises(JobError):
                self.store.cancel(JOB)
            return
        assert self.store.cancel(JOB) == self.model.active
        if self.model.active:
            self.model.state = "cancelled"

    @rule()
    def purge(self) -> None:
        if self.model.active:
            with pytest.raises(JobError, match="cancel it before purging"):
                self.store.purge(JOB)
            return
        if self.model.state == "purged":
            with pytest.raises(JobError):
                self.store.purge(JOB)
            return
        self.store.purge(JOB)
        self.model.state = "purged"
        self.pending.clear()

    @rule(data=st.data(), partial=st.booleans(), drain=st.booleans(), block=st.integers(1, 5))
    def export_once(self, data, partial: bool, drain: bool, block: int) -> None:
        self.export(data, partial, drain, block, follow=False)

    @rule(data=st.data(), partial=st.booleans(), drain=st.booleans(), block=st.integers(1, 5))
    def export_following(self, data, partial: bool, drain: bool, block: int) -> None:
        self.export(data, partial, drain, block, follow=True)

    def export(self, data, partial: bool, drain: bool, block: int, follow: bool) -> None:
        """``tango results`` (``--follow``, ``--partial``, ``--drain``), while chunks may land whenever
        the sink syncs and, when following, at each poll (which also may cancel the job)."""
        model = self.model
        answered, drained, state = set(model.final), model.drained, model.state
        sink = LandingSink(lambda: self.land(data))
        exporter = Exporter(self.store, JOB, sink, drain=drain, block=block, poll=lambda: self.poll(data))
        refused = state == "purged" or bool(drained and not partial) or \
            (not follow and not partial and state not in ("done", "failed"))
        try:
            status = self.store.status(JOB)
            status = exporter.follow(status, partial, interval=0) if follow else exporter.once(status, partial)
        except JobError:
            assert refused, "an export that should run was refused"
            return
        assert not refused, "an export that should be refused ran"
        self.tally["follows" if follow else "exports"] += 1
        indices = self.check_lines(sink.lines())
        assert answered - set(range(drained)) <= set(indices), "an export left out an item answered before it"
        if not partial and status.state in ("done", "failed"):
            assert indices == list(range(model.total))
        now = self.store.status(JOB).drained
        assert now >= drained and (drain or now == drained)
        lines = dict(zip(indices, sink.lines()))
        model.drained_out.update((i, lines[i]) for i in range(drained, now) if i in lines)
        lost = [i for i in range(drained, now) if i not in lines]
        model.drained, model.lost = now, model.lost | set(lost)
        self.tally["drained items"] += now - drained
        assert not lost, f"items {lost} were drained but this export never wrote them"

    def poll(self, data):
        """One wait of ``--follow``: a chunk lands, or (when none is queued) the job is resumed or cancelled."""
        if not self.deliver_pending(data):
            if self.model.active and data.draw(st.booleans(), label="resume or cancel"):
                self.resume_the_job()
            else:
                self.cancel()
        return self.store.status(JOB)

    def check_lines(self, lines: list[str]) -> list[int]:
        """Each line is the item's first stored answer; items in input order, none twice."""
        indices = [int(json.loads(line)["id"][2:]) for line in lines]
        assert indices == sorted(set(indices)), "an export wrote items out of order or twice"
        for index, line in zip(indices, lines):
            assert line == self.model.final[index].to_json(), f"item {index}: exported line is not its answer"
        return indices

    # -- what must hold after every step ---------------------------------------
    @invariant()
    def redis_matches_the_model(self) -> None:
        model, client = self.model, self.store.client
        self.tally["checks"] += 1
        if model.state == "purged":
            assert client.exists(*job_keys(JOB)) == 0, "purge left keys of the job"
            return
        meta = client.hgetall(meta_key(JOB))
        bits = client.execute_command("GET", answered_key(JOB), NEVER_DECODE=True) or b""
        answered = {i for i in range(len(bits) * 8) if bits[i >> 3] >> (7 - (i & 7)) & 1}
        assert answered == set(model.final) and len(bits) <= (model.total + 7) // 8, "the bitmap is not the model"
        failed = {i for i, r in model.final.items() if r.error}
        tiers = [r.tier for r in model.final.values() if not r.error]
        assert (int(meta["done"]), int(meta["failed"])) == (len(model.final) - len(failed), len(failed))
        assert (int(meta["tier1"]), int(meta["tier2"])) == (tiers.count(1), tiers.count(2))
        assert int(meta["done"]) + int(meta["failed"]) == len(answered), "counters differ from the popcount"
        assert meta["state"] == model.state and int(meta.get("drained", 0)) == model.drained
        results, failures = client.hgetall(results_key(JOB)), client.hgetall(failures_key(JOB))
        assert not set(results) & set(failures), "an item holds both a result and a failure"
        stored = {int(i): raw for i, raw in {**results, **failures}.items()}
        assert stored == {i: r.to_json() for i, r in model.final.items() if i >= model.drained}
        assert set(failures) == {str(i) for i in failed if i >= model.drained}
        assert (int(meta["audited"]), int(meta["audit_agreed"])) == (len(model.audited), sum(model.audited.values()))
        assert {int(i) for i in client.hkeys(audits_key(JOB))} == {i for i in model.audited if i >= model.drained}

    def teardown(self) -> None:
        """Run the job to its end: then every item has exactly one answer, in Redis or in the output
        of the export that drained it."""
        try:
            model = self.model
            if model.state != "purged" and model.total:
                for _ in range(2 * model.total + 2):
                    if model.active and not self.pending:
                        self.resume_the_job()
                    if not self.pending:
                        break
                    chunk = self.pending.pop()
                    self.write([(item.index, ResultRecord(item.id, "positive", 0.5, chunk.tier, "m"), None)
                                for item in chunk.items])
                assert model.state in FINAL_STATES
                if model.state != "cancelled":
                    assert set(model.final) == set(range(model.total))
                    for index in set(range(model.drained)) - model.lost:
                        assert model.drained_out[index] == model.final[index].to_json()
                    self.redis_matches_the_model()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def test_the_bookkeeping_of_a_job_matches_its_model(redis_url):
    BookkeepingMachine.url = redis_url
    BookkeepingMachine.tally.clear()
    run_state_machine_as_test(BookkeepingMachine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]))
    print(f"bookkeeping state machine, {EXAMPLES} examples of up to {STEPS} steps:",
          ", ".join(f"{count} {name}" for name, count in sorted(BookkeepingMachine.tally.items())))
