"""What the end-to-end tests do with a job: submit it through the CLI, wait, fetch, compare with embedded mode."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from cli.main import cli, run
from common.queue.store import ResultStore
from common.testing.chaos import drained, until
from common.testing.cluster import run_tango


def embedded(corpus: Path, out: Path, models: dict, threshold: float, *columns: str) -> list[dict]:
    """What `tango label` writes for the same input (in this process, no Redis), with the workers'
    one torch thread: float sums depend on the thread count."""
    threads = torch.get_num_threads()
    code = run(cli, args=["label", str(corpus), "--small", str(models["small"]), "--big", str(models["big"]),
                          "--threshold", str(threshold), "-o", str(out), "--threads", "1", *columns])
    torch.set_num_threads(threads)
    assert code == 0
    return read_jsonl(out)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def submit(corpus: Path, job: str, url: str, models: dict, threshold: float, *columns: str) -> None:
    done = run_tango("submit", str(corpus), "--job-id", job, "--threshold", str(threshold), "--small",
                     str(models["small"]), "--big", str(models["big"]), *columns, redis_url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == job


def wait_and_fetch(job: str, url: str, out: Path) -> list[dict]:
    waited = run_tango("wait", job, redis_url=url)
    assert waited.returncode == 0, waited.stderr
    assert re.search(r"state\s+done", waited.stderr), waited.stderr
    fetched = run_tango("results", job, "-o", str(out), redis_url=url)
    assert fetched.returncode == 0, fetched.stderr
    return read_jsonl(out)


def assert_drained(store: ResultStore) -> None:
    """No task left queued or unacknowledged (the last ack may trail the last write a moment, and
    the audit's checks may trail the job's end: it is done when every item is answered)."""
    until(lambda: drained(store.client), "the queues (audit checks) and the last acknowledgement")
