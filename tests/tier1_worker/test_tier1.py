"""Tier 1's task in-process on a real Redis: what it answers, what it sends on, what it refuses."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from common.cascade import Cascade
from common.labels import align_labels
from common.ml.models import load_tier
from common.queue.keys import results_key
from common.sampling import audit_mask
from tests.workers import TEXTS, chunk, new_job, queued, runtime


@pytest.fixture()
def tier1(tiny_models, redis_url):
    return runtime(1, tiny_models["small"], redis_url)


def test_confident_items_are_stored_and_the_rest_sent_on_as_one_task(tier1, tiny_models):
    small, big = load_tier(str(tiny_models["small"])), load_tier(str(tiny_models["big"]))
    expected = Cascade(small, big, 0.9, align_labels(small.labels, big.labels)).run(TEXTS)
    escalated = set(np.flatnonzero(expected.tiers == 2).tolist())
    assert 0 < len(escalated) < len(TEXTS), "the tiny model should be unsure of some items only"
    new_job(tier1.store, "j1")
    tier1.run(chunk("j1"))
    sent = queued(tier1.store, "tier2")
    assert len(sent) == 1 and sent[0].tier == 2
    assert {item.index for item in sent[0].items} == escalated
    stored = list(tier1.store.iter_results("j1", partial=True))
    assert len(stored) == len(TEXTS) - len(escalated)
    by_id = {r.id: r for r in stored}
    for i, record in enumerate(expected.records()):
        if i not in escalated:
            assert (by_id[f"id{i}"].label, by_id[f"id{i}"].score, by_id[f"id{i}"].tier) == \
                (record["label"], record["score"], 1)
            assert by_id[f"id{i}"].model == str(tiny_models["small"])


def test_threshold_one_sends_everything_on(tier1):
    new_job(tier1.store, "j1", threshold=1.0)
    tier1.run(chunk("j1", threshold=1.0))
    assert len(queued(tier1.store, "tier2")[0].items) == len(TEXTS)
    assert tier1.store.status("j1").done == 0


def test_a_model_with_other_labels_fails_the_chunk_instead_of_guessing(tier1):
    labels = ("red", "green", "blue")
    new_job(tier1.store, "j1", labels=labels)
    tier1.run(chunk("j1", labels=labels))
    status = tier1.store.status("j1")
    assert (status.done, status.failed, status.state) == (0, len(TEXTS), "failed")
    errors = {r.error for r in tier1.store.iter_results("j1")}
    assert len(errors) == 1 and "does not fit the job" in errors.pop()
    assert queued(tier1.store, "tier2") == []


def test_a_cancelled_job_is_skipped(tier1):
    new_job(tier1.store, "j1")
    tier1.store.cancel("j1")
    assert tier1.run(chunk("j1")) == {"skipped": "cancelled"}
    assert tier1.store.status("j1").done == 0 and queued(tier1.store, "tier2") == []


def test_a_malformed_message_is_dropped(tier1):
    result = tier1.run({"v": 1, "job": "x}:meta", "items": []})
    assert "invalid job id" in result["rejected"]
    assert tier1.store.client.keys("tango:{x*") == []


def test_an_audit_sample_of_the_answered_items_leaves_as_a_task_of_its_own(tier1):
    new_job(tier1.store, "audit-3")
    summary = tier1.run(chunk("audit-3", audit=0.5))
    answered = sorted(tier1.store.answered("audit-3"))
    picked = np.array(answered)[audit_mask("audit-3", np.array(answered), 0.5)].tolist()
    assert 0 < len(picked) < len(answered), "choose a job id whose sample is neither empty nor everything"
    sent = {c.name: c for c in queued(tier1.store, "tier2")}
    assert set(sent) == {"0", "0a"} and all(c.tier == 2 and c.audit == 0.5 for c in sent.values())
    assert all(item.audit is None for item in sent["0"].items)
    assert [item.index for item in sent["0a"].items] == picked
    labels = {int(r.id[2:]): r.label for r in tier1.store.iter_results("audit-3", partial=True)}
    assert [item.audit for item in sent["0a"].items] == [labels[i] for i in picked]
    status = tier1.store.status("audit-3")
    assert (status.done, status.tier1, status.audited) == (len(answered), len(answered), 0)
    assert (summary["decided"], summary["forwarded"], summary["audit"]) == \
        (len(answered), len(TEXTS) - len(answered), len(picked))
    assert tier1.metrics.registry.get_sample_value("tango_tier2_fraction") == \
        (len(TEXTS) - len(answered)) / len(TEXTS), "audit items are not escalated items"


def test_a_chunk_naming_items_past_the_jobs_total_answers_nothing(tier1, caplog):
    new_job(tier1.store, "short", total=4)  # the chunk names items 0-7
    with caplog.at_level(logging.ERROR):
        result = tier1.run(chunk("short"))
    assert "outside the job's items 0-3" in result["dropped"]
    status = tier1.store.status("short")
    assert (status.done, status.failed, status.state) == (0, 0, "running")
    assert tier1.store.answered("short") == set() and tier1.store.client.hlen(results_key("short")) == 0
    lines = [r.getMessage() for r in caplog.records if "short" in r.getMessage()]
    assert len(lines) == 1 and "dropped" in lines[0] and "\n" not in lines[0]
def test_an_item_whose_record_cannot_be_stored_costs_only_that_item(tier1, monkeypatch):
    """A write the store refuses for one record is retried item by item: the other items are answered,
    the refused one is recorded as failed with the reason, and the task returns with nothing half done."""
    import redis

    from common.queue.messages import Chunk, WorkItem

    new_job(tier1.store, "j1", total=3, threshold=0.0)
    write = tier1.store.write

    def refuse_huge(job, entries):
        if any(record.id == "huge" and record.error is None for _, record, _ in entries):
            raise redis.ResponseError("Error running script: a record this store cannot hold")
        return write(job, entries)

    monkeypatch.setattr(tier1.store, "write", refuse_huge)
    items = (WorkItem(0, "a", TEXTS[0]), WorkItem(1, "huge", TEXTS[1]), WorkItem(2, "c", TEXTS[2]))
    out = tier1.run(Chunk("j1", 0, 1, 0.0, ("negative", "positive"), items).encode())
    assert out["decided"] == 3
    records = list(tier1.store.iter_results("j1"))
    assert [r.id for r in records] == ["a", "huge", "c"] and tier1.store.status("j1").state == "failed"
    assert "could not be stored" in records[1].error and records[0].error is None
