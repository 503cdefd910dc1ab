"""Tier 2's cross-chunk batcher: it flushes on size and on time, loses nothing at shutdown,
keeps each chunk's (and job's) rows apart, and confines a model error to its own chunk."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from common.ml.models import load_for_worker
from common.queue.decisions import decide_tier2
from common.queue.runtime import TierRuntime
from common.testing.cluster import START_TIMEOUT
from tests.workers import TEXTS, chunk, new_job, runtime
from tier2_worker.app import batching
from tier2_worker.batching import Batcher, BatcherClosed

HOUR = 3600.0  # a max wait that never expires within a test: only size or close() can flush


class Recorder:
    """A fake model: row i of a text "N" is [N, -N]; it remembers every batch it ran."""

    def __init__(self, bad: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.bad = bad

    def __call__(self, texts, pairs):
        self.batches.append(list(texts))
        if self.bad in texts:
            raise ValueError(f"cannot score {self.bad!r}")
        return np.array([[float(t), -float(t)] for t in texts])


def texts(start: int, count: int) -> list[str]:
    return [str(n) for n in range(start, start + count)]


def test_a_full_batch_runs_without_waiting_for_the_timer():
    model = Recorder()
    batcher = Batcher(model, batch_size=8, max_wait=HOUR)
    futures = [batcher.submit(texts(10 * n, 3)) for n in range(3)]  # 9 items: one full batch of 8
    first, second = futures[0].result(START_TIMEOUT), futures[1].result(START_TIMEOUT)
    assert model.batches == [texts(0, 3) + texts(10, 3) + texts(20, 2)]
    assert first[:, 0].tolist() == [0, 1, 2] and second[:, 0].tolist() == [10, 11, 12]
    assert not futures[2].done()  # its last item waits for more items, or the timer, or close()
    batcher.close()
    assert futures[2].result(0)[:, 0].tolist() == [20, 21, 22]
    assert model.batches[1] == ["22"]
    assert (batcher.stats.batches, batcher.stats.items, batcher.stats.full) == (2, 9, 1)


def test_a_partial_batch_runs_once_the_oldest_item_has_waited_max_wait():
    model = Recorder()
    batcher = Batcher(model, batch_size=1000, max_wait=0.01)
    assert batcher.probabilities(texts(0, 5))[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert model.batches == [texts(0, 5)]
    batcher.close()


def test_a_timed_cut_keeps_whole_model_batches_and_the_rest_waits_again():
    model = Recorder()
    batcher = Batcher(model, batch_size=16, max_wait=1.0, unit=4)
    early = batcher.submit(texts(0, 10))  # overdue after 1 s: 8 run (two model batches), 2 wait again
    deadline = time.monotonic() + START_TIMEOUT
    while not model.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.batches == [texts(0, 8)] and not early.done()
    late = batcher.submit(texts(100, 2))  # within the restarted wait: joins the 2 left behind
    assert late.result(START_TIMEOUT)[:, 0].tolist() == [100, 101]
    assert model.batches[1:] == [texts(8, 2) + texts(100, 2)]
    assert early.result(0)[:, 0].tolist() == list(range(10))
    batcher.close()


def test_a_timed_cut_below_one_model_batch_runs_it_all():
    model = Recorder()
    batcher = Batcher(model, batch_size=16, max_wait=0.01, unit=4)
    assert batcher.probabilities(texts(0, 3))[:, 0].tolist() == [0, 1, 2]
    assert model.batches == [texts(0, 3)]
    batcher.close()


def test_close_runs_every_queued_item_and_then_refuses_new_ones():
    model = Recorder()
    batcher = Batcher(model, batch_size=4, max_wait=HOUR)
    futures = [batcher.submit(texts(100 * n, n + 1)) for n in range(5)]  # 15 items: 3 full, 3 left
    batcher.close(timeout=START_TIMEOUT)
    assert [f.result(0)[:, 0].tolist() for f in futures] == [[float(t) for t in texts(100 * n, n + 1)]
                                                          for n in range(5)]
    assert sum(len(b) for b in model.batches) == 15 and max(len(b) for b in model.batches) == 4
    with pytest.raises(BatcherClosed):
        batcher.submit(["1"])


def test_pairs_and_single_texts_never_share_a_batch():
    model = Recorder()
    batcher = Batcher(model, batch_size=100, max_wait=HOUR)
    single, paired = batcher.submit(["1", "2"]), batcher.submit(["3"], ["x"])
    batcher.close(timeout=START_TIMEOUT)
    assert model.batches == [["1", "2"], ["3"]]
    assert single.result(0).shape == (2, 2) and paired.result(0).shape == (1, 2)


def test_a_model_error_fails_only_the_chunk_that_holds_the_bad_item():
    model = Recorder(bad="13")
    batcher = Batcher(model, batch_size=6, max_wait=HOUR)
    good, bad = batcher.submit(texts(0, 3)), batcher.submit(texts(11, 3))
    assert good.result(START_TIMEOUT)[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="'13'"):
        bad.result(START_TIMEOUT)
    batcher.close()


def test_concurrent_chunks_get_their_own_rows():
    model = Recorder()
    batcher = Batcher(model, batch_size=16, max_wait=0.005)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: batcher.probabilities(texts(1000 * n, 1 + n % 7)), range(40)))
    batcher.close()
    for n, rows in enumerate(results):
        assert rows[:, 0].tolist() == [float(t) for t in texts(1000 * n, 1 + n % 7)]
    assert max(len(b) for b in model.batches) <= 16


def test_batched_tier_2_keeps_each_jobs_results_apart(tiny_models, redis_url):
    """Two jobs with opposite label orders, their chunks merged into shared batches."""
    env = {"TANGO_MODEL": str(tiny_models["big"]), "TANGO_REDIS_URL": redis_url, "TANGO_THREADS": "1",
           "TANGO_MAX_WAIT_MS": "50", "TANGO_BATCH_SIZE": "12"}
    batched = TierRuntime(tier=2, decide=decide_tier2, loader=load_for_worker, env=env, batching=batching)
    batched.ensure_loaded()
    assert isinstance(batched.scorer, Batcher)
    plain = runtime(2, tiny_models["big"], redis_url)
    orders = {"ja": ("negative", "positive"), "jb": ("positive", "negative")}
    for job, labels in orders.items():
        new_job(batched.store, job, labels=labels)
        new_job(plain.store, f"{job}-plain", labels=labels)
        plain.run(chunk(f"{job}-plain", tier=2, labels=labels))
    start = threading.Barrier(2)

    def run(job: str) -> None:
        start.wait()
        batched.run(chunk(job, tier=2, labels=orders[job]))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, orders))
    batched.scorer.close()
    assert batched.scorer.stats.items == 2 * len(TEXTS)
    for job in orders:
        got = list(batched.store.iter_results(job))
        want = list(plain.store.iter_results(f"{job}-plain"))
        assert [(r.id, r.label, r.tier) for r in got] == [(r.id, r.label, r.tier) for r in want]
        assert np.allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
        assert batched.store.status(job).state == "done"


def test_drain_runs_queued_items_at_once_and_keeps_accepting():
    model = Recorder()
    batcher = Batcher(model, batch_size=100, max_wait=HOUR)
    waiting = batcher.submit(texts(0, 2))
    batcher.drain()
    assert waiting.result(START_TIMEOUT)[:, 0].tolist() == [0, 1]
    assert batcher.probabilities(texts(5, 1))[:, 0].tolist() == [5]  # a task still finishing its message
    batcher.close()
