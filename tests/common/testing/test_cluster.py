"""How the local cluster launcher stops the worker processes it starts and notices one that died."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import WorkerError
from common.testing.cluster import Process, wait_ready


def _sleeper(tmp_path: Path, ignore_sigterm: bool = False, exit_code: int | None = None) -> Process:
    """A stand-in worker process in its own session, as ``start_worker`` makes them."""
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
            + (f"sys.exit({exit_code})\n" if exit_code is not None else "print('up', flush=True)\ntime.sleep(60)\n"))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    if exit_code is None:
        process.stdout.readline()  # its SIGTERM handler is in place
    return Process("tier1", process, tmp_path / "tier1.log", tier=1)


def test_terminate_stops_politely_then_kills_one_that_ignores_sigterm(tmp_path):
    polite, stubborn = _sleeper(tmp_path), _sleeper(tmp_path, ignore_sigterm=True)
    polite.terminate(timeout=10)
    stubborn.terminate(timeout=0.5)
    assert polite.popen.returncode == -15 and stubborn.popen.returncode == -9


def test_wait_ready_fails_in_one_line_when_a_worker_exits(tmp_path):
    worker = _sleeper(tmp_path, exit_code=2)
    worker.popen.wait()
    with pytest.raises(WorkerError, match=r"tier-1 worker exited with status 2; see .*tier1\.log"):
        wait_ready([worker], timeout=5)
