"""The one local cluster launcher: a throwaway ``redis-server``, tier workers as real processes, the CLI.

Tests, benchmarks and ``tango demo --redis-url`` all start their clusters here,
so a worker is started, declared ready and stopped in exactly one way. Every
process runs in its own process group (a terminal's Ctrl-C reaches only the
caller, which stops its workers in order) and is killed as a group. A worker is
ready when its log shows both tango's "worker ready: model" line (the model is
loaded) and Celery's "ready." line (the consumer is running).
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
from typing import Sequence

import redis

from common.errors import WorkerError

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300.0  # a bound on waiting for a process (imports torch, loads a model), not a timing target
STOP_TIMEOUT = 30.0  # seconds a worker gets to finish after SIGTERM before its group is killed
MODEL_READY = "worker ready: model"
CONSUMER_READY = " ready."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    """A process started in its own group; ``tier`` is set for workers."""

    name: str
    popen: subprocess.Popen
    log: Path | None = None
    tier: int | None = None
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def check_alive(self) -> None:
        if not self.running():
            what = f"tier-{self.tier} worker" if self.tier else self.name
            raise WorkerError(f"the {what} exited with status {self.popen.returncode}; see {self.log}")

    def kill(self) -> None:
        """SIGKILL the whole group (the main process and, for prefork, its pool children)."""
        if self.stopped:
            return
        self.stopped = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=60)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (Celery's warm shutdown: finish the current task, withdraw from the registry), then
        SIGKILL the group if it is not gone within ``timeout``."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
            self.stopped = True
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class RedisServer:
    port: int
    process: Process
    argv: list[str]
    password: str | None = None  # the default user's (``--requirepass``), for the caller's own client
    host: str = "127.0.0.1"  # the address it listens on (another network namespace's, in multi-host tests)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, decode_responses: bool = True) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password, decode_responses=decode_responses)

    def stop(self) -> None:
        self.process.terminate()

    def crash(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds survives."""
        self.process.kill()

    def restart(self) -> None:
        """The same server again: same port, same --dir (so the same AOF, if any)."""
        self.process = _spawn("redis", self.argv)
        _await_ping(self)


def start_redis(directory: Path, *args: str, password: str | None = None, host: str = "127.0.0.1",
                prefix: Sequence[str] = ()) -> RedisServer:
    """A throwaway redis-server without persistence; ``args`` add or override settings. ``host`` is
    the address it binds; ``prefix`` runs it through another command (``ip netns exec NS``), so that
    it can live on another host's network."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise WorkerError("redis-server is not on PATH: a local cluster needs a real Redis")
    port = free_port()
    argv = [*prefix, binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no",
            "--dir", str(directory), *args]
    server = RedisServer(port, _spawn("redis", argv), argv, password, host)
    _await_ping(server)
    return server


def _spawn(name: str, argv: list[str], log: Path | None = None, env: dict[str, str] | None = None,
           tier: int | None = None) -> Process:
    out = log.open("w") if log else subprocess.DEVNULL
    try:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log:
            out.close()
    return Process(name, popen, log, tier)


def _await_ping(server: RedisServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and server.process.running():
        try:
            if server.client().ping():
                return
        except redis.ConnectionError:
            time.sleep(0.05)
    server.process.kill()
    raise WorkerError(f"redis-server on port {server.port} did not answer PING")


def cluster_env(redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without its TANGO_* settings, plus the cluster's: a started process
    sees only the settings its caller chose (the URL travels here, never on a command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if redis_url:
        env["TANGO_REDIS_URL"] = redis_url
    return {**env, **extra}


def tango_argv(*args: str, module: str = "cli.main") -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_tango(*args: str, redis_url: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``tango`` CLI in a fresh interpreter."""
    return subprocess.run(tango_argv(*args), cwd=ROOT, env=cluster_env(redis_url), capture_output=True, text=True,
                          timeout=timeout)


def celery_argv(tier: int, pool: str = "prefork", app: str | None = None) -> list[str]:
    """``celery -A tierN_worker worker`` as a user runs it without the tango CLI (model from TANGO_MODEL)."""
    return [sys.executable, "-m", "celery", "-A", app or f"tier{tier}_worker", "worker", "-Q", f"tier{tier}",
            "-P", pool, "-c", "1", "--without-mingle", "--without-gossip", "-l", "INFO"]


def start_worker(tier: int, model: Path | str, redis_url: str, log_dir: Path, *args: str, name: str | None = None,
                 argv: list[str] | None = None, env: dict[str, str] | None = None) -> Process:
    """A tier worker as its own process group, logging to ``log_dir/NAME.log``.

    By default ``tango worker tierN --model MODEL ARGS``; ``argv`` swaps in another command line
    (``celery_argv``, or a benchmark's own entry point) that gets ``ARGS`` too. ``env`` adds TANGO_*
    settings; the model is also given as TANGO_MODEL, which ``celery -A`` workers read."""
    name = name or f"tier{tier}-{len(list(log_dir.glob('*.log')))}"
    command = argv or tango_argv("worker", f"tier{tier}", "--model", str(model))
    environment = cluster_env(redis_url, TANGO_MODEL=str(model), **(env or {}))
    return _spawn(name, [*command, "-n", f"{name}@%h", *args], log_dir / f"{name}.log", environment, tier)


def start_celery_worker(tier: int, name: str, model: Path | str, redis_url: str, log_dir: Path, pool: str = "prefork",
                        app: str | None = None, **env: str) -> Process:
    """``celery -A tierN_worker worker -c 1`` (or ``-A app``) on one torch thread; ``env`` adds TANGO_* settings."""
    return start_worker(tier, model, redis_url, log_dir, name=name, argv=celery_argv(tier, pool, app),
                        env={"TANGO_THREADS": "1", **env})


def is_ready(worker: Process) -> bool:
    text = worker.log_text()
    return MODEL_READY in text and CONSUMER_READY in text


def wait_ready(workers: list[Process], timeout: float = START_TIMEOUT) -> None:
    """Until every worker has loaded its model and consumes; one line naming the worker otherwise."""
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending:
        for worker in list(pending):
            worker.check_alive()
            if is_ready(worker):
                pending.remove(worker)
        if pending and time.monotonic() > deadline:
            raise WorkerError(f"the tier-{pending[0].tier} worker was not ready after {timeout:.0f} s; "
                              f"see {pending[0].log}")
        time.sleep(0.1 if pending else 0)


def stop_cluster(server: RedisServer, workers: Sequence[Process], *commands: subprocess.Popen) -> None:
    """Tear down what a test started: its commands (each its own process group, killed), then its workers,
    then Redis."""
    for command in commands:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
    for worker in workers:
        worker.kill()
    server.stop()


def stop_all(processes: list[Process]) -> None:
    for process in reversed(processes):
        process.kill()
