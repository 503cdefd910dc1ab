"""Property-based checks of the idempotent result store on a real redis-server.

Whatever order chunk writes arrive in, however often each is repeated (late acks,
redelivery after a crash, a second tier-2 forward), the stored results and the
counters equal those of a reference model in which each item is written once:
its first write wins and every later one changes nothing.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.queue.config import ClusterSettings
from common.queue.results import ResultRecord
from common.queue.store import JobSpec, ResultStore

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_jobs = itertools.count()

# one item's outcome in one delivery: tier 1, tier 2 or a failure, and whether it matched its gold label
outcomes = st.tuples(st.sampled_from([1, 2, "f"]), st.sampled_from([None, True, False]))


@st.composite
def deliveries(draw) -> tuple[int, list[list[tuple[int, object, object]]]]:
    """A job's total and a shuffled list of chunk writes that covers every item, with repeats."""
    total = draw(st.integers(min_value=1, max_value=12))
    indices = st.lists(st.integers(min_value=0, max_value=total - 1), min_size=1, max_size=total, unique=True)
    writes = [[(i, *draw(outcomes)) for i in chunk] for chunk in draw(st.lists(indices, max_size=6))]
    writes.append([(i, *draw(outcomes)) for i in range(total)])  # every item is answered at least once
    repeats = draw(st.lists(st.sampled_from(range(len(writes))), max_size=8))
    return total, draw(st.permutations(writes + [writes[n] for n in repeats]))


def record(index: int, tier, correct) -> tuple[int, ResultRecord, object]:
    if tier == "f":
        return index, ResultRecord.failed(f"id{index}", 2, "model error"), None
    return index, ResultRecord(f"id{index}", "positive" if index % 2 else "negative", 0.75, tier, f"m{tier}"), correct


def reference(writes) -> dict[int, tuple]:
    """The first write of each item: what an exactly-once store must end up holding."""
    first: dict[int, tuple] = {}
    for chunk in writes:
        for index, tier, correct in chunk:
            first.setdefault(index, (tier, None if tier == "f" else correct))
    return first


@pytest.fixture()
def store(redis_url) -> ResultStore:
    return ResultStore.open(ClusterSettings(redis_url=redis_url))


def new_job(store: ResultStore, total: int) -> str:
    job = f"p{next(_jobs)}"
    store.create_job(JobSpec(job=job, total=total, labels=["negative", "positive"], threshold=0.9, chunk_size=4))
    store.mark_submitted(job)
    return job


@SETTINGS
@given(deliveries())
def test_any_replay_of_chunk_writes_equals_writing_each_item_once(store, case):
    total, writes = case
    job = new_job(store, total)
    added = sum(store.write(job, [record(*entry) for entry in chunk]) for chunk in writes)
    final = reference(writes)
    status = store.status(job)
    tiers = [tier for tier, _ in final.values()]
    golds = [correct for tier, correct in final.values() if correct is not None]
    assert added == total == len(final)
    assert (status.done, status.failed) == (total - tiers.count("f"), tiers.count("f"))
    assert (status.tier1, status.tier2) == (tiers.count(1), tiers.count(2))
    assert (status.gold, status.correct) == (len(golds), sum(golds))
    assert status.state == ("failed" if "f" in tiers else "done") and status.finished is not None
    stored = list(store.iter_results(job))
    assert [r.id for r in stored] == [f"id{i}" for i in range(total)]
    assert [("f" if r.error else r.tier) for r in stored] == [final[i][0] for i in range(total)]


@SETTINGS
@given(deliveries())
def test_the_job_is_unfinished_until_its_last_item_whatever_the_order(store, case):
    total, writes = case
    job = new_job(store, total)
    seen: set[int] = set()
    for chunk in writes:
        store.write(job, [record(*entry) for entry in chunk])
        seen |= {index for index, _, _ in chunk}
        status = store.status(job)
        assert status.answered == len(seen)
        assert status.is_final == (len(seen) == total)
