"""The audit on a real cluster: redis-server, a tier-1 and a tier-2 `celery worker`, the `tango` CLI.

The stored checks must be exactly what the two tiny models give, run here in-process on exactly
the accepted items the job's seeded sample picks; the labels must be those of a job without audit.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.cascade import answers, escalate_mask
from common.ml.models import load_tier
from common.queue.config import ClusterSettings, resolve_chunk_size
from common.queue.keys import audits_key
from common.queue.store import ResultStore
from common.sampling import audit_mask
from common.testing.chaos import until
from common.testing.cluster import run_tango, start_celery_worker, start_redis, wait_ready
from tests.e2e.jobs import assert_drained, embedded, submit, wait_and_fetch

N_ITEMS, RATE, THRESHOLD, JOB = 400, 0.5, 0.9, "audited"
OUTPUTS = np.array([0, 1])  # both tiny models speak the job's labels in its order
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("audit")
    server = start_redis(root)
    workers = [start_celery_worker(1, "t1", tiny_models["small"], server.url, root),
               start_celery_worker(2, "t2", tiny_models["big"], server.url, root)]
    try:
        wait_ready(workers)
        yield server
    finally:
        for worker in workers:
            worker.kill()
        server.stop()


def expected_checks(texts: list[str], models: dict) -> tuple[list[int], list[int]]:
    """(accepted item indexes, audited ones that tier 2 agrees on), chunk by chunk as the workers run them,
    on one torch thread as they do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    small, big = load_tier(str(models["small"])), load_tier(str(models["big"]))
    accepted, agreed = [], []
    size = resolve_chunk_size(None, len(texts))  # submit's default
    for start in range(0, len(texts), size):
        chunk = texts[start:start + size]
        probs = small.probabilities(chunk)
        keep = np.flatnonzero(~escalate_mask(probs, THRESHOLD))
        small_ids, _ = answers(probs[keep], OUTPUTS)
        picked = audit_mask(JOB, keep + start, RATE)
        accepted += (keep + start).tolist()
        if picked.any():
            big_ids, _ = answers(big.probabilities([chunk[i] for i in keep[picked]]), OUTPUTS)
            agreed += (keep[picked][big_ids == small_ids[picked]] + start).tolist()
    torch.set_num_threads(threads)
    return accepted, agreed


def test_the_stored_checks_are_the_models_answers_on_the_seeded_sample(cluster, tiny_models, sentences, tmp_path):
    server = cluster
    corpus = tmp_path / "corpus.jsonl"
    texts = [text for text, _ in sentences[:N_ITEMS]]
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text, "label": label}) + "\n"
                              for i, (text, label) in enumerate(sentences[:N_ITEMS])), encoding="utf-8")
    accepted, agreed = expected_checks(texts, tiny_models)
    sample = np.array(accepted)[audit_mask(JOB, np.array(accepted), RATE)].tolist()
    assert 0 < len(agreed) < len(sample) < len(accepted) < N_ITEMS, "a test that cannot tell agree from disagree"

    submit(corpus, JOB, server.url, tiny_models, THRESHOLD, "--audit", str(RATE))
    results = wait_and_fetch(JOB, server.url, tmp_path / "cluster.jsonl")
    assert [i for i, r in enumerate(results) if r["tier"] == 1] == accepted
    plain = embedded(corpus, tmp_path / "embedded.jsonl", tiny_models, THRESHOLD, "--audit", "0")
    assert results == plain, "an audit must never change a label or a score"

    store = ResultStore.open(ClusterSettings(redis_url=server.url))
    until(lambda: store.status(JOB).audited == len(sample), "the audit's checks (they may trail the job's end)")
    status = store.status(JOB)
    assert (status.audited, status.audit_agreed) == (len(sample), len(agreed))
    assert (status.done, status.tier1, status.tier2) == (N_ITEMS, len(accepted), N_ITEMS - len(accepted))
    assert sorted(map(int, store.client.hkeys(audits_key(JOB)))) == sample
    assert_drained(store)

    reported = json.loads(run_tango("status", JOB, "--json", redis_url=server.url).stdout)
    audit = reported["audit"]
    observed = len(agreed) / len(sample)
    assert (audit["rate"], audit["audited"], audit["agreed"], audit["accepted"]) == \
        (RATE, len(sample), len(agreed), len(accepted))
    assert audit["accepted_low"] <= observed <= audit["accepted_high"] and audit["accepted_agreement"] == observed
    assert audit["job_low"] <= audit["job_agreement"] <= audit["job_high"]
    assert audit["tier2_load"] == (N_ITEMS - len(accepted) + len(sample)) / N_ITEMS
    assert reported["done"] == N_ITEMS and reported["tier2"] == N_ITEMS - len(accepted)
