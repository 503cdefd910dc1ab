"""The whole cluster with real parts: redis-server, two tier-1 and one tier-2 `celery worker`
processes, and the `tango` CLI as subprocesses. Results must equal embedded mode's, item for item.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest

from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.store import ResultStore
from common.queue.keys import UNACKED, audits_key, results_key
from common.queue.messages import QUEUE_TIER1
from common.testing.chaos import until
from common.testing.cluster import (ROOT, cluster_env, run_tango, start_celery_worker, start_redis, tango_argv,
                                    wait_ready)
from tests.e2e.jobs import assert_drained, embedded, submit, wait_and_fetch

N_ITEMS = 2000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_models):
    """Redis plus workers t1a, t1b (tier 1) and t2 (tier 2), torn down by killing their process groups."""
    root = tmp_path_factory.mktemp("cluster")
    server = start_redis(root)
    workers = [start_celery_worker(1, "t1a", tiny_models["small"], server.url, root),
               start_celery_worker(1, "t1b", tiny_models["small"], server.url, root),
               start_celery_worker(2, "t2", tiny_models["big"], server.url, root)]
    try:
        wait_ready(workers)
        yield server, workers
    finally:
        for worker in workers:
            worker.kill()
        server.stop()


def test_a_2000_item_job_equals_embedded_mode(cluster, tiny_models, sentences, tmp_path):
    server, workers = cluster
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text, "label": label}) + "\n"
                              for i, (text, label) in enumerate(sentences)), encoding="utf-8")
    expected = embedded(corpus, tmp_path / "embedded.jsonl", tiny_models, 0.9)
    tier1_count = sum(r["tier"] == 1 for r in expected)
    assert 0 < tier1_count < N_ITEMS

    control = make_app("client", ClusterSettings(redis_url=server.url)).control
    tier2_node = [f"t2@{_host(workers[2])}"]
    assert control.cancel_consumer("tier2", destination=tier2_node, reply=True, timeout=30)
    store = ResultStore.open(ClusterSettings(redis_url=server.url))
    submit(corpus, "big", server.url, tiny_models, 0.9)

    # tier 2 is held back, so the job stops part-way: status must say so
    until(lambda: store.status("big").done == tier1_count, "tier 1's share of the job")
    status = run_tango("status", "big", redis_url=server.url)
    assert status.returncode == 0, status.stderr
    assert re.search(rf"progress\s+{tier1_count} of {N_ITEMS} items", status.stdout)
    assert re.search(r"state\s+running", status.stdout)
    assert control.add_consumer("tier2", destination=tier2_node, reply=True, timeout=30)

    results = wait_and_fetch("big", server.url, tmp_path / "cluster.jsonl")
    assert (tmp_path / "cluster.jsonl").read_bytes() == (tmp_path / "embedded.jsonl").read_bytes()
    assert [(r["id"], r["label"], r["tier"], r["score"]) for r in results] == \
        [(r["id"], r["label"], r["tier"], r["score"]) for r in expected]

    final = json.loads(run_tango("status", "big", "--json", redis_url=server.url).stdout)
    assert (final["state"], final["done"], final["failed"]) == ("done", N_ITEMS, 0)
    assert final["tier1"] + final["tier2"] == N_ITEMS and final["tier1"] == tier1_count
    assert final["gold"] == N_ITEMS and final["accuracy"] is not None
    assert store.client.hlen(results_key("big")) == N_ITEMS
    assert_drained(store)
    served = [w.log_text() for w in workers[:2]]
    assert all("job 'big' chunk" in log for log in served), "both tier-1 workers should have taken chunks"


def test_two_jobs_with_different_thresholds_do_not_mix(cluster, tiny_models, sentences, glue_dir, tmp_path):
    server, _ = cluster
    singles = tmp_path / "singles.jsonl"
    singles.write_text("".join(json.dumps({"id": f"a{i}", "text": text}) + "\n"
                               for i, (text, _) in enumerate(sentences[:600])), encoding="utf-8")
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "premise", "hypothesis"])
        for row in list(csv.reader((glue_dir / "rte" / "train.tsv").open(encoding="utf-8"), delimiter="\t"))[1:401]:
            writer.writerow([f"r{row[0]}", row[1], row[2]])
    pair_columns = ("--text-column", "premise", "--pair-column", "hypothesis", "--id-column", "key")
    expected_a = embedded(singles, tmp_path / "a_embedded.jsonl", tiny_models, 0.75)
    expected_b = embedded(pairs, tmp_path / "b_embedded.jsonl", tiny_models, 0.95, *pair_columns)

    procs = [subprocess.Popen([*tango_argv("submit"), str(path), "--job-id", job, "--threshold", threshold, "--labels",
                               "negative,positive", *columns], cwd=ROOT, env=cluster_env(server.url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path, job, threshold, columns in ((singles, "ja", "0.75", ()), (pairs, "jb", "0.95", pair_columns))]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    got_a = wait_and_fetch("ja", server.url, tmp_path / "a.jsonl")
    got_b = wait_and_fetch("jb", server.url, tmp_path / "b.jsonl")
    key = lambda records: [(r["id"], r["label"], r["tier"], r["score"]) for r in records]  # noqa: E731
    assert key(got_a) == key(expected_a) and key(got_b) == key(expected_b)
    share_a = sum(r["tier"] == 2 for r in got_a) / len(got_a)
    share_b = sum(r["tier"] == 2 for r in got_b) / len(got_b)
    assert share_a < share_b, "the higher threshold must send more items to tier 2"
    jobs = run_tango("jobs", redis_url=server.url).stdout
    assert re.search(r"^ja\s+done\s+600\s+600\s", jobs, re.M) and re.search(r"^jb\s+done\s+400\s+400\s", jobs, re.M)


def test_follow_drain_exports_a_running_job_as_embedded_mode_and_empties_redis(cluster, tiny_models, sentences,
                                                                               tmp_path):
    server, workers = cluster
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"f{i}", "text": text}) + "\n"
                              for i, (text, _) in enumerate(sentences[:600])), encoding="utf-8")
    tier1_count = sum(r["tier"] == 1 for r in embedded(corpus, tmp_path / "embedded.jsonl", tiny_models, 0.9))
    control = make_app("client", ClusterSettings(redis_url=server.url)).control
    tier2_node = [f"t2@{_host(workers[2])}"]
    assert control.cancel_consumer("tier2", destination=tier2_node, reply=True, timeout=30)
    submit(corpus, "follow", server.url, tiny_models, 0.9)
    out = tmp_path / "follow.jsonl"
    follower = subprocess.Popen([*tango_argv("results", "follow", "-o", str(out), "--follow", "--drain",
                                             "--interval", "0.1")], cwd=ROOT, env=cluster_env(server.url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = ResultStore.open(ClusterSettings(redis_url=server.url))
    until(lambda: store.status("follow").done == tier1_count, "tier 1's share of the job")
    assert follower.poll() is None, "the follower must wait for tier 2's items"
    assert control.add_consumer("tier2", destination=tier2_node, reply=True, timeout=30)
    _, err = follower.communicate(timeout=300)
    assert follower.returncode == 0, err
    assert out.read_bytes() == (tmp_path / "embedded.jsonl").read_bytes()
    status = store.status("follow")
    assert (status.state, status.drained, len(store.answered("follow"))) == ("done", 600, 600)
    assert store.client.hlen(results_key("follow")) == 0
    assert_drained(store)  # the audit checks trail the job's end
    assert store.status("follow").audited > 0, "the default audit checked none of tier 1's answers"
    assert store.client.exists(audits_key("follow")) == 0, "audit records of drained items stay in Redis"


def _host(worker) -> str:
    match = re.search(r"t2@(\S+) ready\.", worker.log_text())
    assert match, worker.log_text()[-2000:]
    return match.group(1)


class _Hostile:
    """Unpickling this runs a shell command: what a pickle on the queue could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickled_message_is_refused_and_never_run(cluster, tmp_path):
    import pickle

    from kombu import Connection, Producer

    server, workers = cluster
    marker = tmp_path / "pwned"
    # raw pickle bytes labelled as such, as anyone who can write to Redis could send them
    body = pickle.dumps(([_Hostile(marker)], {}, {}))
    with Connection(server.url) as connection:
        Producer(connection).publish(
            body, routing_key="tier1", content_type="application/x-python-serialize",
            content_encoding="binary", declare=[],
            headers={"lang": "py", "task": "tango.tier1.classify", "id": "hostile-1", "root_id": "hostile-1",
                     "parent_id": None, "group": None, "argsrepr": "", "kwargsrepr": "", "origin": "test"})
    store = ResultStore.open(ClusterSettings(redis_url=server.url))
    until(lambda: any("Refusing to deserialize" in w.log_text() for w in workers[:2]), "the refusal")
    until(lambda: store.client.llen(QUEUE_TIER1) == 0 and store.client.hlen(UNACKED) == 0, "the message to go")
    assert not marker.exists()
    assert all(w.popen.poll() is None for w in workers), "a worker died on the message"
