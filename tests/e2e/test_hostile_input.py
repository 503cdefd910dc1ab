"""Hostile corpus values against a real cluster: a record no UTF-8 store can hold (a lone surrogate, valid
JSON) is rejected at submit, never reaches a worker, and the job ends with one result per accepted item."""
from __future__ import annotations

import json

from common.testing.cluster import run_tango, start_celery_worker, stop_all, wait_ready


def test_a_lone_surrogate_is_rejected_at_submit_and_the_job_ends(redis_url, tiny_models, tmp_path):
    good = [json.dumps({"id": f"s{i}", "text": f"a film worth seeing , part {i}"}) for i in range(12)]
    hostile = ['{"id": "\\udc80", "text": "an id no store can hold"}',
               '{"id": "t1", "text": "a text no store can hold \\ud800"}',
               '{"id": "t2", "text": "fine", "text_pair": "\\udfff"}']
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("\n".join(good[:4] + hostile + good[4:]) + "\n", encoding="ascii")
    refused = run_tango("submit", str(corpus), "--job-id", "h0", "--labels", "negative,positive", redis_url=redis_url)
    assert refused.returncode == 2 and "line 5: field 'id' holds a lone surrogate" in refused.stderr
    assert refused.stderr.count("\n") == 1
    workers = [start_celery_worker(1, "h1", tiny_models["small"], redis_url, tmp_path),
               start_celery_worker(2, "h2", tiny_models["big"], redis_url, tmp_path)]
    try:
        wait_ready(workers)
        submitted = run_tango("submit", str(corpus), "--job-id", "h", "--labels", "negative,positive",
                              "--skip-invalid", "--chunk-size", "4", redis_url=redis_url)
        assert submitted.returncode == 0, submitted.stderr
        assert "submitted 12 items" in submitted.stderr and "3 invalid records rejected" in submitted.stderr
        waited = run_tango("wait", "h", "--timeout", "120", redis_url=redis_url, timeout=180)
        assert waited.returncode == 0, waited.stderr[-2000:]
        results = run_tango("results", "h", redis_url=redis_url)
        assert results.returncode == 0, results.stderr
        assert [json.loads(line)["id"] for line in results.stdout.splitlines()] == [f"s{i}" for i in range(12)]
        status = json.loads(run_tango("status", "h", "--json", redis_url=redis_url).stdout)
        assert (status["state"], status["done"], status["failed"], status["rejected"]) == ("done", 12, 0, 3)
    finally:
        stop_all(workers)
    assert all("Traceback" not in worker.log_text() for worker in workers)
