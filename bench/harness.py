"""What the throughput benchmarks share: the machine's description, corpora, job timing, CPU and
peak-memory readings. Clusters start through ``common.testing.cluster``, as the tests' do.

Benchmarks are scripts, not tests: they start real processes, measure both sides of a ratio
in the same run, print the figures and clean up every process they started.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import redis

from common.queue.keys import meta_key
from common.queue.store import ResultStore
from common.queue.waiting import wait_final
from common.testing.cluster import (ROOT, Process, RedisServer, cluster_env, start_redis, start_worker, stop_all,
                                    tango_argv, wait_ready)

SST2 = ROOT.parent / "shared" / "data" / "glue" / "sst2"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every process a benchmark starts inherits these
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    """One line: cores, torch threads and versions, and the load other jobs put on the machine."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads in this process), python {platform.python_version()}, "
            f"load average {load}")


@contextlib.contextmanager
def fresh_cluster(root: Path, small: Path, big: Path, tier1_processes: int = 1,
                  backends: tuple[str, str] = ("torch", "torch"), batch_size: int = 256) -> Iterator[RedisServer]:
    """A fresh redis-server with one tier-1 worker (``tier1_processes`` processes) and one tier-2 worker,
    ``batch_size`` rows per model call and one torch thread each, each tier on its ``backends`` entry,
    ready; every process is stopped on the way out."""
    server = start_redis(root)
    processes = [server.process]
    common = ("--batch-size", str(batch_size), "--threads", "1")
    try:
        processes += [start_worker(1, small, server.url, root, *common, "--backend", backends[0],
                                   "-c", str(tier1_processes)),
                      start_worker(2, big, server.url, root, *common, "--backend", backends[1])]
        wait_ready(processes[1:])
        yield server
    finally:
        stop_all(processes)


def cpu_seconds(process: Process) -> float:
    """User + system CPU time of the process and its live children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(_cpu_ticks(pid) for pid in [process.pid, *_children(process.pid)]) / ticks


def peak_rss_mb(process: Process) -> float:
    """Peak resident memory (VmHWM) of the process and its children, summed, in MiB."""
    return sum(_hwm_kb(pid) for pid in [process.pid, *_children(process.pid)]) / 1024


def job_store(url: str) -> ResultStore:
    """The store of the cluster at ``url``: what a benchmark reads its jobs' records through."""
    return ResultStore(redis.Redis.from_url(url, decode_responses=True), url)


def wait_done(url: str, job: str, timeout: float = 3600.0, interval: float = 0.05) -> float:
    """Wait for the job to end; returns the time.time() it finished, as its record says (so ``interval``
    costs no precision). A job cancelled, or not final within ``timeout`` seconds, ends the benchmark."""
    store = job_store(url)
    status = wait_final(store, store.status(job), interval, timeout)
    if status.state not in ("done", "failed"):
        sys.exit(f"job {job} ended {status.state}" if status.is_final else
                 f"job {job} did not finish within {timeout:.0f} s")
    return status.finished


LAST_CPU = [0.0]  # CPU seconds of the last peak_of command


def peak_of(args: list[str], redis_url: str) -> tuple[float, str]:
    """Peak RSS (MiB) of one ``tango`` command and its stdout (its CPU seconds go to ``LAST_CPU``)."""
    return finish_measured(start_measured(args, redis_url), args)


def start_measured(args: list[str], redis_url: str) -> subprocess.Popen:
    """One ``tango`` command started under a measuring helper, for commands that must run beside others.

    A fresh helper process runs only this command, so its RUSAGE_CHILDREN maximum (what the
    kernel recorded for the waited child) belongs to that command alone.
    """
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(u.ru_maxrss, r.returncode, u.ru_utime + u.ru_stime, file=sys.stderr)")
    return subprocess.Popen([sys.executable, "-c", code, *tango_argv(*args)], cwd=ROOT, env=cluster_env(redis_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_measured(process: subprocess.Popen, args: list[str]) -> tuple[float, str]:
    """Wait for a ``start_measured`` command: its peak RSS (MiB) and stdout; its CPU seconds go to ``LAST_CPU``."""
    stdout, stderr = process.communicate()
    kib, returncode, cpu = stderr.strip().splitlines()[-1].split()
    LAST_CPU[0] = float(cpu)
    if returncode != "0":
        sys.exit(f"tango {' '.join(args)} failed: {stderr[-2000:]}")
    return int(kib) / 1024, stdout


@dataclasses.dataclass
class ExportedJob:
    """A job submitted and exported as users run it: seconds from the first byte of ``tango submit``
    to the job's end and to the export's, and the two commands' peak memory."""

    seconds: float
    exported_seconds: float
    submit_mb: float
    export_mb: float


def run_exported(url: str, corpus: Path, job: str, out: Path, submit_options: list[str],
                 drain: bool = False) -> ExportedJob:
    """``tango submit`` with ``tango results --follow`` writing ``out`` beside it (``--drain`` too when
    asked), workers up beforehand; the export's end is when the last result is in the file."""
    client = redis.Redis.from_url(url)
    start = time.time()
    submit_args = ["submit", str(corpus), "--job-id", job, *submit_options]
    submit = start_measured(submit_args, url)
    while not client.exists(meta_key(job)):
        time.sleep(0.01)
    export_args = ["results", job, "--follow", *(["--drain"] if drain else []), "-o", str(out)]
    export = start_measured(export_args, url)
    finished = wait_done(url, job)
    submit_mb, _ = finish_measured(submit, submit_args)
    export_mb, _ = finish_measured(export, export_args)
    return ExportedJob(finished - start, time.time() - start, submit_mb, export_mb)


def build_corpus(path: Path, items: int) -> list[str]:
    """``items`` SST-2 train sentences (cycled) as JSON lines with gold labels."""
    rows = [line.split("\t") for line in (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    names = ("negative", "positive")
    with path.open("w", encoding="utf-8") as out:
        for n in range(items):
            text, label = rows[n % len(rows)]
            out.write(json.dumps({"id": str(n), "text": text, "label": names[int(label)]}) + "\n")
    return [text for text, _ in rows[:5000]]


def scrape(port: int, *names: str) -> list[float]:
    """The values of unlabelled-or-single-series metrics ``names`` on a worker's endpoint (0 if absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(names):
            name, value = line.split(" ")
            values[name.split("{")[0]] = float(value)
    return [values.get(name, 0.0) for name in names]


def scrape_batches(port: int) -> tuple[float, float]:
    """(batches, items) of tier 2's batch-size histogram."""
    batches, items = scrape(port, "tango_batch_size_count", "tango_batch_size_sum")
    return batches, items


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
