"""Tier 2's task in-process on a real Redis: final answers, written once, in the job's labels."""
from __future__ import annotations

import pytest

from common.ml.models import load_tier
from tests.workers import TEXTS, chunk, new_job, runtime


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
