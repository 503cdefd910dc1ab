"""Faults inside a worker, with real celery worker processes: an item the model raises on, an item that
kills its process every time (its chunk is split until it is alone, then it alone is capped and failed),
a model that cannot load."""
from __future__ import annotations

import json
import shutil

from common.testing.chaos import drained, until
from common.testing.cluster import START_TIMEOUT, run_tango, start_celery_worker, start_redis, wait_ready

KILLER, RAISER = 15, 25  # item positions in chunks of 10: each must fail alone


def test_an_item_that_kills_its_process_and_one_that_raises_each_fail_alone(tiny_models, tmp_path):
    corpus = tmp_path / "in.jsonl"
    texts = {KILLER: "POISON-KILL here", RAISER: "POISON-RAISE here"}
    corpus.write_text("".join(json.dumps({"id": f"x{i}", "text": texts.get(i, f"a plain review number {i}")}) + "\n"
                              for i in range(40)))
    server = start_redis(tmp_path)
    env = {"TANGO_MAX_ATTEMPTS": "2", "TANGO_VISIBILITY_TIMEOUT": "4"}
    workers = [start_celery_worker(1, "poisoned", tiny_models["small"], server.url, tmp_path, app="tests.chaos.poison_app",
                            **env),
               start_celery_worker(2, "t2", tiny_models["big"], server.url, tmp_path, **env)]
    try:
        wait_ready(workers)
        assert run_tango("submit", str(corpus), "--job-id", "poison", "--chunk-size", "10", "--labels",
                         "negative,positive", redis_url=server.url).returncode == 0
        waited = run_tango("wait", "poison", redis_url=server.url)
        until(lambda: drained(server.client()), "the queues to drain")
        status = json.loads(run_tango("status", "poison", "--json", redis_url=server.url).stdout)
        fetched = run_tango("results", "poison", redis_url=server.url)
        log = workers[0].log_text()
        alive = workers[0].popen.poll() is None
    finally:
        for worker in workers:
            worker.kill()
        server.stop()
    assert waited.returncode == 1 and "ended failed (2 failed items)" in waited.stderr
    assert (status["state"], status["done"], status["failed"]) == ("failed", 38, 2)
    records = [json.loads(line) for line in fetched.stdout.splitlines()]
    assert [r["id"] for r in records] == [f"x{i}" for i in range(40)]
    failed = {i: r["error"] for i, r in enumerate(records) if "error" in r}
    assert sorted(failed) == [KILLER, RAISER]
    assert "gave up after 2 starts of this item" in failed[KILLER]
    assert failed[RAISER] == "tier 1 model error: ValueError: poisoned text"
    assert all(r["label"] in ("negative", "positive") for i, r in enumerate(records) if i not in failed)
    # chunk 1 (10 items) dies once and is split, so do its half 1/1 (15-19) and quarter 1/10 (15-16); then
    # 1/100, the killer alone, dies on its two allowed starts and is failed on the third
    assert log.count("exited with 'signal 9 (SIGKILL)'") == 5
    assert "split into 1/100 (1 items) and 1/101 (1 items)" in log
    assert alive, "the worker itself survives its pool processes"
    assert "tier 1 worker imported its model's code" in log  # once, in the parent: each new process only reads weights


def test_a_worker_whose_model_cannot_load_exits_non_zero_with_one_line(tiny_models, tmp_path):
    broken = shutil.copytree(tiny_models["small"], tmp_path / "broken-model")
    (broken / "model.safetensors").write_bytes(b"not a tensor file")  # the config still reads fine
    server = start_redis(tmp_path)
    worker = start_celery_worker(1, "broken", broken, server.url, tmp_path)
    try:
        code = worker.popen.wait(timeout=START_TIMEOUT)
    finally:
        worker.kill()
        server.stop()
    reasons = [line for line in worker.log.read_text().splitlines() if "cannot load its model" in line]
    assert code != 0
    assert len(reasons) == 1 and "broken-model" in reasons[0], worker.log.read_text()[-3000:]


def test_a_forged_chunk_whose_strings_hold_lone_surrogates_still_ends_its_job(tiny_models, tmp_path):
    """Valid JSON (``"\\udc80"``) that Redis cannot take as UTF-8: each item ends with a result or a
    recorded failure, and the job ends, instead of the task being acknowledged with nothing stored."""
    from common.queue.celery_app import make_app, send_chunk
    from common.queue.config import ClusterSettings
    from common.queue.messages import TASK_TIER1, Chunk, WorkItem
    from common.queue.store import JobSpec, ResultStore

    server = start_redis(tmp_path)
    settings = ClusterSettings(redis_url=server.url)
    store = ResultStore.open(settings)
    items = (WorkItem(0, "\udc80", "a plain review"), WorkItem(1, "ok", "a text \udc80 with a lone surrogate"),
             WorkItem(2, "fine", "another plain review"))
    store.create_job(JobSpec(job="forged", total=3, labels=["negative", "positive"], threshold=0.0, chunk_size=3))
    store.mark_submitted("forged")
    worker = start_celery_worker(1, "t1", tiny_models["small"], server.url, tmp_path)
    try:
        wait_ready([worker])
        send_chunk(make_app("client", settings), TASK_TIER1, Chunk("forged", 0, 1, 0.0, ("negative", "positive"), items))
        until(lambda: store.status("forged").is_final, "the forged job to end", 60)
        until(lambda: drained(server.client()), "the queues to drain")
        status = store.status("forged")
        records = list(store.iter_results("forged"))
    finally:
        worker.kill()
        server.stop()
    assert status.answered == 3
    assert [r.id for r in records] == ["\udc80", "ok", "fine"]
    assert records[0].label in ("negative", "positive") and records[2].label in ("negative", "positive")
