"""The benchmarks' wait: a job that ends in any final state ends it (against a real redis-server)."""
from __future__ import annotations

import time

import pytest

from bench.harness import job_store, wait_done
from common.queue.results import ResultRecord
from common.queue.jobs import JobSpec


def submitted(url: str) -> None:
    store = job_store(url)
    store.create_job(JobSpec(job="b1", total=1, labels=["negative", "positive"], threshold=0.9, chunk_size=1))
    store.mark_submitted("b1")


def test_a_finished_job_gives_the_time_its_record_says_it_finished(redis_url):
    submitted(redis_url)
    job_store(redis_url).write("b1", [(0, ResultRecord("id0", "positive", 0.9, 1, "m"), None)])
    assert wait_done(redis_url, "b1", timeout=30) == job_store(redis_url).status("b1").finished


def test_a_cancelled_job_ends_the_benchmark_at_once(redis_url):
    submitted(redis_url)
    job_store(redis_url).cancel("b1")
    start = time.monotonic()
    with pytest.raises(SystemExit, match="job b1 ended cancelled"):
        wait_done(redis_url, "b1", timeout=20)
    assert time.monotonic() - start < 10  # not left to spin until the timeout
