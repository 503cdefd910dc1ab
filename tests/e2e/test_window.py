"""A corpus larger than the window: submit queues a window and waits for workers, Redis never holds
more of the job than the window, and every item is answered once, as when the corpus is queued at once."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import redis

from common.queue.keys import meta_key
from common.queue.messages import QUEUE_TIER1, QUEUE_TIER2
from common.queue.broker import queued_chunks
from common.testing.chaos import until
from common.testing.cluster import ROOT, cluster_env, run_tango, start_worker, tango_argv, wait_ready
from tests.e2e.jobs import read_jsonl

ITEMS, CHUNK, WINDOW = 200, 10, 40


class QueueWatch:
    """The most items of any job seen waiting on the two queues at once, sampled until stopped."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            queued = sum(len(c.items) for q in (QUEUE_TIER1, QUEUE_TIER2) for c in queued_chunks(self.client, q))
            self.most = max(self.most, queued)
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.most


def test_a_submit_larger_than_its_window_waits_for_workers_and_redis_holds_only_the_window(
        redis_url, tiny_models, sentences, tmp_path):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text}) + "\n"
                              for i, (text, _) in enumerate(sentences[:ITEMS])))
    watch = QueueWatch(redis_url)
    submit = subprocess.Popen(tango_argv("submit", str(corpus), "--job-id", "windowed", "--threshold", "0.8",
                                         "--chunk-size", str(CHUNK), "--window", str(WINDOW), "--audit", "0"),
                              cwd=ROOT, env=cluster_env(redis_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    workers = []
    try:
        time.sleep(3)  # no worker yet: the submit queues one window and waits
        assert submit.poll() is None
        status = run_tango("status", "windowed", redis_url=redis_url).stdout
        assert f"{WINDOW} of {ITEMS} items queued so far" in status, status
        assert json.loads(run_tango("status", "windowed", "--json", redis_url=redis_url).stdout)["queued"] == WINDOW
        workers = [start_worker(1, tiny_models["small"], redis_url, tmp_path, name="t1"),
                   start_worker(2, tiny_models["big"], redis_url, tmp_path, name="t2")]
        wait_ready(workers)
        out, err = submit.communicate(timeout=180)
        assert submit.returncode == 0, err
        assert out.strip() == "windowed"
        waited = run_tango("wait", "windowed", "--timeout", "120", redis_url=redis_url)
        assert waited.returncode == 0, waited.stderr
        most = watch.stop()
        assert 0 < most <= WINDOW  # never more of the job in Redis than the window
        report = json.loads(run_tango("status", "windowed", "--json", redis_url=redis_url).stdout)
        assert (report["done"], report["failed"], report["queued"]) == (ITEMS, 0, ITEMS)
        fetched = run_tango("results", "windowed", "-o", str(tmp_path / "out.jsonl"), redis_url=redis_url)
        assert fetched.returncode == 0, fetched.stderr
        assert [row["id"] for row in read_jsonl(tmp_path / "out.jsonl")] == [f"s{i}" for i in range(ITEMS)]
    finally:
        watch.stop()
        if submit.poll() is None:
            submit.kill()
        for worker in workers:
            worker.kill()


def test_an_interrupted_submit_says_how_to_queue_the_rest_and_resume_does(redis_url, tiny_models, sentences, tmp_path):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text}) + "\n"
                              for i, (text, _) in enumerate(sentences[:ITEMS])))
    submit = subprocess.Popen(tango_argv("submit", str(corpus), "--job-id", "cut", "--chunk-size", str(CHUNK),
                                         "--window", str(WINDOW), "--labels", "negative,positive"),
                              cwd=ROOT, env=cluster_env(redis_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(3)
    submit.send_signal(2)  # Ctrl-C while it waits on the full window
    _, err = submit.communicate(timeout=30)
    assert submit.returncode == 130
    assert "interrupted after queueing 4 chunks of job 'cut'; `tango resume cut` queues the rest" in err
    workers = [start_worker(1, tiny_models["small"], redis_url, tmp_path, name="t1"),
               start_worker(2, tiny_models["big"], redis_url, tmp_path, name="t2")]
    try:
        wait_ready(workers)
        resumed = run_tango("resume", "cut", "--window", str(WINDOW), redis_url=redis_url)
        assert resumed.returncode == 0, resumed.stderr
        waited = run_tango("wait", "cut", "--timeout", "120", redis_url=redis_url)
        assert waited.returncode == 0, waited.stderr
        report = json.loads(run_tango("status", "cut", "--json", redis_url=redis_url).stdout)
        assert (report["done"], report["failed"], report["state"]) == (ITEMS, 0, "done")
    finally:
        for worker in workers:
            worker.kill()


def test_a_submit_killed_mid_corpus_is_reported_gone_and_the_workers_sweep_feeds_the_rest(
        redis_url, tiny_models, sentences, tmp_path):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text}) + "\n"
                              for i, (text, _) in enumerate(sentences[:ITEMS])))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    submit = subprocess.Popen(tango_argv("submit", str(corpus), "--job-id", "killed", "--chunk-size", str(CHUNK),
                                         "--window", str(ITEMS // 2), "--labels", "negative,positive", "--audit", "0"),
                              cwd=ROOT, env=cluster_env(redis_url, TANGO_FEEDER_LEASE="1"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    workers = []
    try:
        until(lambda: client.hget(meta_key("killed"), "fed") == str(ITEMS // 2), "the submit to fill its window")
        submit.kill()  # SIGKILL: no chance to say anything or give its lease up
        submit.wait(10)
        until(lambda: json.loads(run_tango("status", "killed", "--json", redis_url=redis_url).stdout)["submit_lost"],
              "the lease to lapse", 10)
        status = run_tango("status", "killed", redis_url=redis_url).stdout
        assert f"{ITEMS // 2} of {ITEMS} items queued, and its submit is gone: `tango resume killed`" in status
        env = {"TANGO_SWEEP_INTERVAL": "2"}
        workers = [start_worker(1, tiny_models["small"], redis_url, tmp_path, name="t1", env=env),
                   start_worker(2, tiny_models["big"], redis_url, tmp_path, name="t2", env=env)]
        wait_ready(workers)
        waited = run_tango("wait", "killed", "--timeout", "120", redis_url=redis_url)
        assert waited.returncode == 0, waited.stderr
        report = json.loads(run_tango("status", "killed", "--json", redis_url=redis_url).stdout)
        logs = "".join(worker.log_text() for worker in workers)
    finally:
        if submit.poll() is None:
            submit.kill()
        for worker in workers:
            worker.kill()
    assert (report["state"], report["done"], report["failed"], report["resumed"]) == ("done", ITEMS, 0, ITEMS // 2)
    assert f"job 'killed' lost its submit after {ITEMS // 2} of {ITEMS} items were queued" in logs
