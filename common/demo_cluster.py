"""``tango demo --redis-url``: label the demo's corpus through a real cluster instead of in-process.

The cascade logic stays where it is (``common.cascade``, run by the workers);
this module only does the demo's plumbing at the edges: write the corpus as
JSONL, start one ``tango worker`` per tier (unless the Redis already has
workers for a tier), submit the corpus with ``common.submission.submit``, wait
with a progress bar, read the results back from the store, and stop the
workers it started -- on success, on error and on Ctrl-C alike.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import redis

from common.cascade import CascadeOutput
from common.config import ClusterSettings
from common.demo import DemoData
from common.errors import JobError, TangoError, WorkerError
from common.labels import LabelAlignment
from common.store import JobStatus, ResultStore
from common.training import TrainingData

log = logging.getLogger(__name__)

READY_TIMEOUT = 300.0  # seconds a started worker may take to import torch and load its model
STOP_TIMEOUT = 30.0  # seconds a worker gets to finish after SIGTERM before it is killed
STALL_TIMEOUT = 300.0  # seconds without one answered item before the demo stops waiting
POLL = 0.2


@dataclass
class StartedWorker:
    tier: int
    model: Path
    log: Path
    process: subprocess.Popen

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise WorkerError(f"the tier-{self.tier} worker exited with status {self.process.returncode}; "
                              f"see {self.log}")


def start_worker(tier: int, model: Path, settings: ClusterSettings, log_path: Path,
                 batch_size: int) -> StartedWorker:
    """``tango worker tierN --model M --threads 1`` in its own session (a terminal's Ctrl-C reaches only
    the demo, which then stops it in order); the Redis URL goes by environment, never on a command line."""
    argv = [sys.executable, "-m", "cli.main", "worker", f"tier{tier}", "--model", str(model), "--threads", "1",
            "--batch-size", str(batch_size)]
    with log_path.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **settings.to_env()}, start_new_session=True)
    return StartedWorker(tier, model, log_path, process)


def wait_ready(store: ResultStore, workers: list[StartedWorker], timeout: float = READY_TIMEOUT) -> None:
    """Until each worker's model process has advertised its model in the store (it does so once loaded)."""
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending:
        for worker in list(pending):
            worker.check_alive()
            if any(info.get("model") == str(worker.model) for info in store.advertised(worker.tier).values()):
                pending.remove(worker)
        if pending and time.monotonic() > deadline:
            raise WorkerError(f"the tier-{pending[0].tier} worker was not ready after {timeout:.0f} s; "
                              f"see {pending[0].log}")
        time.sleep(POLL if pending else 0)


def stop_worker(worker: StartedWorker, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (Celery's warm shutdown: finish the current task, withdraw from the registry), then
    SIGKILL the worker's whole process group if it is not gone within ``timeout``."""
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
    try:
        worker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("tier-%d worker pid %d ignored SIGTERM for %.0f s; killing it", worker.tier,
                    worker.process.pid, timeout)
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()


def write_corpus(corpus: TrainingData, path: Path) -> Path:
    """The corpus as JSONL (``id``, ``text``, ``text_pair``, gold ``label``), the format ``submit`` reads."""
    with path.open("w", encoding="utf-8") as out:
        for n, text in enumerate(corpus.texts):
            row = {"id": str(n), "text": text, "label": corpus.labels[int(corpus.label_ids[n])]}
            if corpus.pairs is not None:
                row["text_pair"] = corpus.pairs[n]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@dataclass
class ClusterLabeller:
    """A ``common.demo.CorpusLabeller`` that sends the corpus through the cluster at ``settings``."""

    store: ResultStore
    settings: ClusterSettings
    batch_size: int = 32
    say: Callable[[str], None] = lambda _: None
    started: list[StartedWorker] = field(default_factory=list)

    def __call__(self, data: DemoData, small_dir: Path, big_dir: Path, threshold: float,
                 alignment: LabelAlignment) -> CascadeOutput:
        from common.celery_app import make_app
        from common.submission import SubmitRequest, submit

        work = small_dir.parent / "cluster"
        work.mkdir(exist_ok=True)
        corpus = write_corpus(data.corpus, work / "corpus.jsonl")
        job = None
        try:
            self.start_workers({1: small_dir, 2: big_dir}, work)
            done = submit(self.store, make_app("client", self.settings),
                          SubmitRequest(path=str(corpus), threshold=threshold, small=str(small_dir), big=str(big_dir)))
            job = done.job
            self.say(f"  submitted job {job}: {done.total} items in {done.chunks} chunks to {self.settings.masked_url}")
            status = self.wait(job)
            if status.state != "done":
                raise JobError(f"job {job!r} ended {status.state} ({status.failed} failed items); "
                               f"see `tango results {job} --partial` and the worker logs in {work}")
            records = list(self.store.iter_results(job))
        finally:
            self.stop_workers()
            if job is not None:
                self.cancel_unfinished(job)
        label_ids = np.asarray([alignment.label_id(r.label) for r in records])
        tiers = np.asarray([r.tier for r in records], dtype=np.int8)
        return CascadeOutput(alignment.labels, label_ids, np.asarray([r.score for r in records]), tiers,
                             extra={"job": job, "wall_seconds": status.elapsed})

    def start_workers(self, models: dict[int, Path], work: Path) -> None:
        for tier, model in models.items():
            running = self.store.advertised(tier)
            if running:
                served = sorted({str(info.get("model")) for info in running.values()})
                self.say(f"  using the {len(running)} tier-{tier} worker(s) already on {self.settings.masked_url} "
                         f"(model {', '.join(served)})" + ("" if served == [str(model)] else
                                                           f"; not this demo's {model}, so labels may differ"))
                continue
            log_path = work / f"tier{tier}.log"
            self.say(f"  starting `tango worker tier{tier} --model {model} --threads 1` (log: {log_path})")
            self.started.append(start_worker(tier, model, self.settings, log_path, self.batch_size))
        if self.started:
            self.say("  waiting for the workers to load their models")
            wait_ready(self.store, self.started)

    def wait(self, job: str) -> JobStatus:
        """Poll the job with a progress bar until it ends; our own workers must stay alive meanwhile."""
        from tqdm import tqdm

        status = self.store.status(job)
        moved = time.monotonic()
        with tqdm(total=status.total, desc=f"job {job}", unit="item", file=sys.stderr, leave=False,
                  disable=None) as bar:
            while not status.is_final:
                for worker in self.started:
                    worker.check_alive()
                if time.monotonic() - moved > STALL_TIMEOUT:
                    raise WorkerError(f"job {job!r} answered no item for {STALL_TIMEOUT:.0f} s: are the workers "
                                      f"on {self.settings.masked_url} alive?")
                time.sleep(POLL)
                status, before = self.store.status(job), status
                if status.answered != before.answered:
                    moved = time.monotonic()
                bar.n = status.answered
                bar.set_postfix_str(f"tier 2 {status.tier2}", refresh=False)
                bar.refresh()
        self.say(f"  job {job} {status.state}: tier 1 {status.tier1}, tier 2 {status.tier2} items "
                 f"in {status.elapsed:.2f} s")
        return status

    def stop_workers(self) -> None:
        for worker in self.started:
            self.say(f"  stopping the tier-{worker.tier} worker (pid {worker.process.pid})")
            stop_worker(worker)
        self.started.clear()

    def cancel_unfinished(self, job: str) -> None:
        """An interrupted job's queued chunks must not wait for the next workers that come along.
        Best effort: this runs while another error (or Ctrl-C) is on its way out, and must not hide it."""
        try:
            if not self.store.status(job).is_final:
                self.store.cancel(job)
                self.say(f"  cancelled the unfinished job {job}")
        except (redis.RedisError, TangoError) as exc:
            log.warning("could not cancel job %r: %s", job, exc)
