"""Tier 2's task in-process on a real Redis: final answers, written once, in the job's labels."""
from __future__ import annotations

import pytest

from common.ml.models import load_tier
from common.queue.keys import audits_key, meta_key, results_key
from common.queue.messages import Chunk, WorkItem
from common.queue.results import ResultRecord
from tests.workers import LABELS, TEXTS, chunk, new_job, runtime


@pytest.fixture()
def tier2(tiny_models, redis_url):
    return runtime(2, tiny_models["big"], redis_url)


def test_every_item_is_decided_by_tier_2(tier2, tiny_models):
    new_job(tier2.store, "j1")
    tier2.run(chunk("j1", tier=2, gold="positive"))
    probs = load_tier(str(tiny_models["big"])).probabilities(TEXTS)
    records = list(tier2.store.iter_results("j1"))
    assert [r.label for r in records] == [["negative", "positive"][k] for k in probs.argmax(axis=1)]
    assert [r.score for r in records] == [float(p) for p in probs.max(axis=1)]
    status = tier2.store.status("j1")
    assert (status.done, status.tier2, status.state) == (len(TEXTS), len(TEXTS), "done")
    assert status.gold == len(TEXTS) and status.correct == sum(r.label == "positive" for r in records)


def test_a_redelivered_chunk_changes_nothing(tier2):
    new_job(tier2.store, "j1")
    tier2.run(chunk("j1", tier=2))
    before = tier2.store.client.hgetall("tango:{j1}:meta"), tier2.store.client.hgetall("tango:{j1}:results")
    tier2.run(chunk("j1", tier=2))
    assert (tier2.store.client.hgetall("tango:{j1}:meta"), tier2.store.client.hgetall("tango:{j1}:results")) == before


def test_generic_label_names_are_matched_by_index(tiny_models, redis_url):
    rt = runtime(2, tiny_models["generic_big"], redis_url)
    new_job(rt.store, "j1")
    rt.run(chunk("j1", tier=2))
    assert {r.label for r in rt.store.iter_results("j1")} <= {"negative", "positive"}


def test_each_tier_task_lives_only_in_its_own_app() -> None:
    """A process that imports both tiers (tests, benchmarks) must not serve one tier's
    queue with the other's task: Celery's shared tasks would join every app."""
    from common.queue.messages import TASK_TIER1, TASK_TIER2
    from tier1_worker import app as tier1_app
    from tier2_worker import app as tier2_app

    assert TASK_TIER1 in tier1_app.tasks and TASK_TIER2 not in tier1_app.tasks
    assert TASK_TIER2 in tier2_app.tasks and TASK_TIER1 not in tier2_app.tasks


def audited_job(store, job: str) -> Chunk:
    """A job whose items tier 1 answered (odd ones "positive", even ones "negative"), and the audit
    chunk of its items 1, 3 and 6."""
    new_job(store, job)
    said = [LABELS[i % 2] for i in range(len(TEXTS))]
    store.write(job, [(i, ResultRecord(f"id{i}", said[i], 0.97, 1, "small"), None) for i in range(len(TEXTS))])
    items = tuple(WorkItem(i, f"id{i}", TEXTS[i], audit=said[i]) for i in (1, 3, 6))
    return Chunk(job, 0, 2, 0.9, LABELS, items, audit=0.4)


def test_an_audit_chunk_is_checked_and_counted_once_never_answered(tier2, tiny_models):
    audit = audited_job(tier2.store, "j1")
    client = tier2.store.client
    results = client.hgetall(results_key("j1"))
    probs = load_tier(str(tiny_models["big"])).probabilities([item.text for item in audit.items])
    agree = [LABELS[k] == item.audit for k, item in zip(probs.argmax(axis=1), audit.items)]
    assert 0 < sum(agree) < len(agree), "the tiny big model should disagree on some of these"
    summary = tier2.run(audit.encode())
    status = tier2.store.status("j1")
    assert (status.audited, status.audit_agreed) == (3, sum(agree))
    assert (status.done, status.tier1, status.tier2, status.failed, status.state) == (len(TEXTS), len(TEXTS), 0, 0,
                                                                                      "done")
    assert client.hgetall(results_key("j1")) == results and summary["decided"] == 0
    assert sorted(client.hkeys(audits_key("j1"))) == ["1", "3", "6"]
    value = tier2.metrics.registry.get_sample_value
    assert (value("tango_audit_items_total", {"outcome": "agree"}), value("tango_audit_items_total",
                                                                          {"outcome": "disagree"})) == \
        (sum(agree), 3 - sum(agree))
    before = client.hgetall(meta_key("j1"))
    tier2.run(audit.encode())  # redelivered
    assert client.hgetall(meta_key("j1")) == before and client.hgetall(results_key("j1")) == results


def test_a_failed_audit_chunk_only_leaves_the_sample(tiny_models, redis_url):
    rt = runtime(2, tiny_models["other"], redis_url)  # three colours: cannot check a sentiment job
    audit = audited_job(rt.store, "j1")
    summary = rt.run(audit.encode())
    status = rt.store.status("j1")
    assert "does not fit the job" in summary["failed"]
    assert (status.failed, status.audited, status.done, status.state) == (0, 0, len(TEXTS), "done")
    assert rt.store.client.hlen("tango:{j1}:failures") == 0
    assert rt.metrics.registry.get_sample_value("tango_failures_total", {"tier": "2"}) == 0
