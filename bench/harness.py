"""What the throughput benchmarks share: the machine's description, a throwaway redis-server,
tier workers started through the real ``tango worker`` command, and peak-memory readings.

Benchmarks are scripts, not tests: they start real processes, measure both sides of a ratio
in the same run, print the figures and clean up every process they started.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "glue" / "sst2"
START_TIMEOUT = 300.0


def machine() -> str:
    """One line: cores, torch threads and versions, and the load other jobs put on the machine."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads in this process), python {platform.python_version()}, "
            f"load average {load}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    """A process started in its own group, killed as a group."""

    name: str
    popen: subprocess.Popen
    log: Path | None = None

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=60)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its live children so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(_cpu_ticks(pid) for pid in [self.popen.pid, *_children(self.popen.pid)]) / ticks

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM) of the process and its children, summed, in MiB."""
        return sum(_hwm_kb(pid) for pid in [self.popen.pid, *_children(self.popen.pid)]) / 1024


def start_redis(directory: Path) -> tuple[Process, str]:
    port = free_port()
    binary = shutil.which("redis-server") or sys.exit("redis-server is not on PATH")
    popen = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                              "no", "--dir", str(directory)], stdout=subprocess.DEVNULL, start_new_session=True)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            client.ping()
            return Process("redis", popen), f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    popen.kill()
    sys.exit("redis-server did not answer")


def env_for(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_")}
    return {**env, "TANGO_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def start_worker(tier: int, model: Path | str, redis_url: str, log_dir: Path, *args: str,
                 module: str = "cli.main") -> Process:
    """``tango worker tierN --model MODEL ARGS`` as its own process group, logging to a file.

    ``module`` swaps in another entry point with the same arguments (bench/celery_batches_tier2.py),
    so every tier-2 variant starts, logs and reports ready the same way."""
    name = f"tier{tier}-{len(list(log_dir.glob('*.log')))}"
    log = log_dir / f"{name}.log"
    popen = subprocess.Popen([sys.executable, "-m", module, "worker", f"tier{tier}", "--model", str(model),
                              "-n", f"{name}@%h", *args], cwd=ROOT, env=env_for(redis_url),
                             stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log)


def wait_ready(workers: list[Process]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        for worker in list(pending):
            text = worker.log.read_text()
            if worker.popen.poll() is not None:
                sys.exit(f"worker {worker.name} exited: {text[-2000:]}")
            if "worker ready: model" in text and " ready." in text:
                pending.remove(worker)
        time.sleep(0.1)
    if pending:
        sys.exit(f"workers never became ready: {[w.name for w in pending]}")


def stop_all(processes: list[Process]) -> None:
    for process in reversed(processes):
        process.stop()


def wait_done(client: redis.Redis, job: str, timeout: float = 3600.0) -> float:
    """Poll the job's record until it is final; returns the time.time() it finished."""
    key = f"tango:{{{job}}}:meta"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, finished = client.hmget(key, "state", "finished")
        if state in (b"done", b"failed", "done", "failed"):
            return float(finished)
        time.sleep(0.02)
    sys.exit(f"job {job} did not finish within {timeout:.0f} s")


LAST_CPU = [0.0]  # CPU seconds of the last peak_of command


def peak_of(args: list[str], redis_url: str) -> tuple[float, str]:
    """Peak RSS (MiB) of one ``tango`` command and its stdout (its CPU seconds go to ``LAST_CPU``).

    A fresh helper process runs only this command, so its RUSAGE_CHILDREN maximum (what the
    kernel recorded for the waited child) belongs to that command alone.
    """
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(u.ru_maxrss, r.returncode, u.ru_utime + u.ru_stime, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "cli.main", *args], cwd=ROOT,
                          env=env_for(redis_url), capture_output=True, text=True)
    kib, returncode, cpu = done.stderr.strip().splitlines()[-1].split()
    LAST_CPU[0] = float(cpu)
    if returncode != "0":
        sys.exit(f"tango {' '.join(args)} failed: {done.stderr[-2000:]}")
    return int(kib) / 1024, done.stdout


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
