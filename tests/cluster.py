"""Real parts for cluster tests: a throwaway redis-server, Celery workers and the tango CLI as processes.

Import the fixtures into a test module (``from tests.cluster import redis_url``).
A missing ``redis-server`` fails the test rather than skipping it: the cluster
is the product, and a suite that silently skips it proves nothing.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0  # a bound on waiting for a process, not a timing assertion


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen
    argv: list[str] = field(default_factory=list)
    password: str | None = None  # the default user's (``--requirepass``), for the test's own client

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, decode_responses=True)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def crash(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds survives."""
        self.process.kill()
        self.process.wait(timeout=30)

    def restart(self) -> None:
        """The same server again: same port, same --dir (so the same AOF, if any)."""
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _await_ping(self)


def start_redis(directory: Path, *args: str, password: str | None = None) -> RedisServer:
    """A throwaway redis-server without persistence; ``args`` add or override settings."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH: the cluster tests need a real Redis")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory), *args]
    server = RedisServer(port, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                         argv, password)
    _await_ping(server)
    return server


def _await_ping(server: RedisServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if server.client().ping():
                return
        except redis.ConnectionError:
            time.sleep(0.05)
    server.process.kill()
    pytest.fail(f"redis-server on port {server.port} did not answer PING")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server) -> str:
    """A clean database for each test."""
    redis_server.client().flushall()
    return redis_server.url


def tango_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_")}
    return {**env, "TANGO_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), **extra}


def run_tango(*args: str, redis_url: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``tango`` CLI in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=tango_env(redis_url),
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path
    stopped: bool = field(default=False)

    def stop(self) -> None:
        """Kill the worker's whole process group (the main process and its pool children)."""
        if self.stopped:
            return
        self.stopped = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


def start_worker(tier: int, name: str, model: Path, redis_url: str, log_dir: Path,
                 pool: str = "prefork", app: str | None = None, **env: str) -> Worker:
    """``python -m celery -A tierN_worker worker`` (or ``-A app``) as its own process group; ``env``
    adds TANGO_* settings."""
    log = log_dir / f"{name}.log"
    env = tango_env(redis_url, TANGO_MODEL=str(model), TANGO_THREADS="1", **env)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app or f"tier{tier}_worker", "worker", "-Q", f"tier{tier}", "-P", pool,
         "-c", "1", "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return Worker(name, process, log)


def wait_ready(workers: list[Worker]) -> None:
    """Until every worker's pool process has loaded its model (it logs ``worker ready``)."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        for worker in list(pending):
            if worker.process.poll() is not None:
                pytest.fail(f"worker {worker.name} exited: {worker.log.read_text()[-2000:]}")
            if "worker ready: model" in worker.log.read_text():
                pending.remove(worker)
        time.sleep(0.2)
    if pending:
        pytest.fail(f"workers never became ready: {[w.name for w in pending]}")
