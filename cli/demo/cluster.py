"""``tango demo --redis-url``: label the demo's corpus through a real cluster instead of in-process.

The cascade logic stays where it is (``common.cascade``, run by the workers);
this module only does the demo's plumbing at the edges: write the corpus as
JSONL, start one ``tango worker`` per tier (unless the Redis already has
workers for a tier), submit the corpus with ``common.queue.submission.submit``, wait
with a progress bar, read the results back from the store, and stop the
workers it started -- on success, on error and on Ctrl-C alike.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import redis

from cli.demo.pipeline import DemoData
from common.cascade import CascadeOutput
from common.errors import JobError, TangoError, WorkerError
from common.labels import LabelAlignment
from common.ml.training import TrainingData
from common.queue.config import ClusterSettings
from common.queue.jobs import JobStatus
from common.queue.store import ResultStore
from common.testing.cluster import Process, start_worker, wait_ready

log = logging.getLogger(__name__)

STALL_TIMEOUT = 300.0  # seconds without one answered item before the demo stops waiting
POLL = 0.2


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
    """A ``cli.demo.pipeline.CorpusLabeller`` that sends the corpus through the cluster at ``settings``."""

    store: ResultStore
    settings: ClusterSettings
    batch_size: int = 32
    say: Callable[[str], None] = lambda _: None
    started: list[Process] = field(default_factory=list)

    def __call__(self, data: DemoData, small_dir: Path, big_dir: Path, threshold: float,
                 alignment: LabelAlignment) -> CascadeOutput:
        from common.queue.celery_app import make_app
        from common.queue.submission import SubmitRequest, submit

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
            self.say(f"  starting `tango worker tier{tier} --model {model} --threads 1` "
                     f"(log: {work / f'tier{tier}.log'})")
            self.started.append(start_worker(tier, model, self.settings.redis_url, work, "--threads", "1",
                                             "--batch-size", str(self.batch_size), name=f"tier{tier}",
                                             env=self.settings.to_env()))
        if self.started:
            self.say("  waiting for the workers to load their models")
            wait_ready(self.started)

    def wait(self, job: str) -> JobStatus:
        """Poll the job with a progress bar until it ends; our own workers must stay alive meanwhile."""
        from tqdm import tqdm

        from common.queue.waiting import wait_final

        status = self.store.status(job)
        moved = time.monotonic()
        with tqdm(total=status.total, desc=f"job {job}", unit="item", file=sys.stderr, leave=False,
                  disable=None) as bar:
            def watch(now: JobStatus, before: JobStatus | None) -> None:
                nonlocal moved
                if before is not None and now.answered != before.answered:
                    moved = time.monotonic()
                bar.n = now.answered
                bar.set_postfix_str(f"tier 2 {now.tier2}", refresh=False)
                bar.refresh()
                if now.is_final:
                    return
                for worker in self.started:
                    worker.check_alive()
                if time.monotonic() - moved > STALL_TIMEOUT:
                    raise WorkerError(f"job {job!r} answered no item for {STALL_TIMEOUT:.0f} s: are the workers "
                                      f"on {self.settings.masked_url} alive?")

            status = wait_final(self.store, status, POLL, watch=watch)
        self.say(f"  job {job} {status.state}: tier 1 {status.tier1}, tier 2 {status.tier2} items "
                 f"in {status.elapsed:.2f} s")
        return status

    def stop_workers(self) -> None:
        for worker in self.started:
            self.say(f"  stopping the tier-{worker.tier} worker (pid {worker.pid})")
            worker.terminate()
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
