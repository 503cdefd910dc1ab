"""The demo's data (the shipped sample reviews, the fixed splits the cache key relies on) and how the
cluster demo handles the worker processes it starts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.demo import SAMPLE_FILE, DemoSettings, cache_key, load_demo_data, read_sample_reviews
from common.demo_cluster import StartedWorker, stop_worker, wait_ready
from common.errors import WorkerError


def test_sample_reviews_are_shipped_balanced_and_unique():
    data = read_sample_reviews()
    assert len(data) >= 250 and data.labels == ["negative", "positive"]
    assert abs(int(data.label_ids.sum()) * 2 - len(data)) <= 10
    assert len(set(data.texts)) == len(data.texts)
    assert (SAMPLE_FILE.parent / "README.md").read_text().count("written by the tango authors") == 1


def test_sample_splits_are_disjoint_and_stable(tmp_path):
    settings = DemoSettings(cache_dir=tmp_path)
    first, again = load_demo_data(settings), load_demo_data(settings)
    parts = [set(first.train.texts), set(first.calibration.texts), set(first.corpus.texts)]
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert first.sample and cache_key(settings, first) == cache_key(settings, again)
    quick = DemoSettings(cache_dir=tmp_path, quick=True)
    assert cache_key(quick, load_demo_data(quick)) != cache_key(settings, first)


def test_sst2_mode_uses_train_for_training_and_dev_as_corpus(glue_dir: Path, tmp_path):
    data = load_demo_data(DemoSettings(cache_dir=tmp_path, data_dir=str(glue_dir), quick=True, max_corpus_items=50))
    assert not data.sample and len(data.train) == 120 and len(data.corpus) == 50
    assert not set(data.train.texts) & set(data.calibration.texts)



def _sleeper(tmp_path: Path, ignore_sigterm: bool = False, exit_code: int | None = None) -> StartedWorker:
    """A stand-in worker process in its own session, as ``start_worker`` makes them."""
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
            + (f"sys.exit({exit_code})\n" if exit_code is not None else "print('up', flush=True)\ntime.sleep(60)\n"))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    if exit_code is None:
        process.stdout.readline()  # its SIGTERM handler is in place
    return StartedWorker(1, tmp_path / "small", tmp_path / "tier1.log", process)


def test_stop_worker_terminates_then_kills_one_that_ignores_sigterm(tmp_path):
    polite, stubborn = _sleeper(tmp_path), _sleeper(tmp_path, ignore_sigterm=True)
    stop_worker(polite, timeout=10)
    stop_worker(stubborn, timeout=0.5)
    assert polite.process.returncode == -15 and stubborn.process.returncode == -9


def test_wait_ready_fails_in_one_line_when_a_worker_exits(tmp_path):
    class NoWorkers:
        def advertised(self, tier: int) -> dict:
            return {}

    worker = _sleeper(tmp_path, exit_code=2)
    worker.process.wait()
    with pytest.raises(WorkerError, match=r"tier-1 worker exited with status 2; see .*tier1\.log"):
        wait_ready(NoWorkers(), [worker], timeout=5)
