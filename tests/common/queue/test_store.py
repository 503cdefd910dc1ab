"""The result store against a real redis-server: idempotent writes, ordered reads, job states."""
from __future__ import annotations

import pytest

from common.queue.config import ClusterSettings
from common.errors import JobError, ServiceUnavailable
from common.queue.keys import (answered_key, attempts_key, audits_key, job_keys, meta_key, results_key,
                               validate_job_id)
from common.queue.results import AuditOutcome, ResultRecord
from common.queue.store import JobSpec, ResultStore
from common.testing.cluster import free_port

LABELS = ["negative", "positive"]


@pytest.fixture()
def store(redis_url) -> ResultStore:
    return ResultStore.open(ClusterSettings(redis_url=redis_url))


def make_job(store: ResultStore, job: str = "j1", total: int = 4) -> str:
    store.create_job(JobSpec(job=job, total=total, labels=LABELS, threshold=0.9, chunk_size=2))
    store.mark_submitted(job)
    return job


def entry(index: int, tier: int = 1, label: str = "positive", correct: bool | None = None):
    return (index, ResultRecord(f"id{index}", label, 0.5 + index / 100, tier, f"m{tier}"), correct)


def test_a_repeated_write_counts_each_item_once(store):
    job = make_job(store)
    assert store.write(job, [entry(0), entry(1, tier=2)]) == 2
    assert store.write(job, [entry(0), entry(1, tier=2)]) == 0  # a redelivered chunk changes nothing
    status = store.status(job)
    assert (status.done, status.tier1, status.tier2, status.failed, status.state) == (2, 1, 1, 0, "running")


def test_a_job_from_before_the_answered_bitmap_still_counts_each_item_once(store):
    """Its early results have no answered bit: the hashes are checked for it, as the bit suffices for new jobs."""
    job = make_job(store)
    store.client.hdel(meta_key(job), "bitmap")
    assert store.write(job, [entry(0), entry(1, tier=2)]) == 2
    store.client.delete(answered_key(job))  # as an older tango left it: results, and no bits
    assert store.write(job, [entry(0), entry(1, tier=2), entry(2)]) == 1
    assert (store.status(job).done, store.status(job).tier1) == (3, 2)


def test_the_job_finishes_exactly_once_when_every_item_is_answered(store):
    job = make_job(store)
    store.write(job, [entry(0), entry(1)])
    store.write(job, [entry(2, tier=2), entry(3, tier=2)])
    finished = store.status(job)
    assert finished.state == "done" and finished.finished is not None
    store.write(job, [entry(3, tier=2)])
    assert store.status(job).finished == finished.finished
    store.mark_submitted(job)  # a slow submitter must not reopen a finished job
    assert store.status(job).state == "done"


def test_a_failure_is_counted_and_keeps_its_reason(store):
    job = make_job(store, total=2)
    store.write(job, [entry(0), (1, ResultRecord.failed("id1", 2, "model error: boom"), None)])
    store.write(job, [entry(1, tier=2)])  # a later success of a failed item is ignored
    status = store.status(job)
    assert (status.done, status.failed, status.state) == (1, 1, "failed")
    records = list(store.iter_results(job))
    assert records[1].error == "model error: boom" and records[1].label is None


def test_gold_labels_give_the_accuracy(store):
    job = make_job(store, total=3)
    store.write(job, [entry(0, correct=True), entry(1, correct=False), entry(2)])
    status = store.status(job)
    assert (status.gold, status.correct) == (2, 1)
    assert status.accuracy == pytest.approx(0.5)


def test_results_stream_in_input_order_across_blocks(store):
    job = make_job(store, total=7)
    store.write(job, [entry(i) for i in (6, 2, 4, 0)])
    store.write(job, [entry(i, tier=2) for i in (5, 1, 3)])
    assert [r.id for r in store.iter_results(job, block=3)] == [f"id{i}" for i in range(7)]


def test_results_of_an_unfinished_job_need_partial(store):
    job = make_job(store, total=3)
    store.write(job, [entry(2)])
    with pytest.raises(JobError, match="wait for it or pass --partial"):
        list(store.iter_results(job))
    assert [r.id for r in store.iter_results(job, partial=True)] == ["id2"]


def test_an_existing_job_id_is_refused(store):
    make_job(store)
    with pytest.raises(JobError, match="already exists"):
        make_job(store)


def test_cancel_stops_an_active_job_only(store):
    job = make_job(store)
    assert store.cancel(job) is True
    assert store.status(job).state == "cancelled"
    assert store.cancel(job) is False
    store.write(job, [entry(i) for i in range(4)])
    assert store.status(job).state == "cancelled"  # late results do not turn it into "done"


def test_vanished_records_are_reported_not_recreated(store):
    job = make_job(store)
    store.client.delete(*job_keys(job))  # what a restart without persistence leaves
    with pytest.raises(JobError, match="gone"):
        store.write(job, [entry(0)])
    with pytest.raises(JobError, match="gone"):
        store.status(job)
    assert store.client.exists(*job_keys(job)) == 0
    with pytest.raises(JobError, match="no job 'other'"):
        store.status("other")


def test_jobs_are_listed_newest_first(store):
    for job in ("a1", "a2", "a3"):
        make_job(store, job)
    assert [s.job for s in store.list_jobs(2)] == ["a3", "a2"]


def test_all_keys_of_a_job_share_one_hash_tag():
    assert {key.split("}")[0] for key in job_keys("job-1")} == {"tango:{job-1"}


@pytest.mark.parametrize("bad", ["", "a}b", "x{y", "a:b", "../x", "a b", "-lead", "x" * 65, "*"])
def test_job_ids_that_could_reach_other_keys_are_refused(bad):
    with pytest.raises(JobError):
        validate_job_id(bad)


def test_an_unreachable_redis_is_one_line_with_the_password_masked():
    settings = ClusterSettings(redis_url=f"redis://user:s3cret@127.0.0.1:{free_port()}/0", connect_timeout=2)
    with pytest.raises(ServiceUnavailable) as caught:
        ResultStore.open(settings)
    message = str(caught.value)
    assert "s3cret" not in message and "user:***@127.0.0.1" in message and "\n" not in message


def test_an_audit_write_counts_each_check_once_and_never_answers(store):
    job = make_job(store, total=2)
    assert store.write(job, [entry(0), entry(1)]) == 2
    assert store.status(job).state == "done"
    results = store.client.hgetall(results_key(job))
    checks = [AuditOutcome(0, "positive", "positive"), AuditOutcome(1, "positive", "negative")]
    assert store.audit(job, checks) == 2  # after the job is done: still counted
    before = store.client.hgetall(f"tango:{{{job}}}:meta")
    assert store.audit(job, checks) == 0  # a redelivered audit chunk changes no counter
    assert store.audit(job, [AuditOutcome(0, "positive", "negative")]) == 0  # nor a different answer
    assert store.client.hgetall(f"tango:{{{job}}}:meta") == before
    status = store.status(job)
    assert (status.audited, status.audit_agreed, status.done, status.tier1, status.tier2, status.state) == \
        (2, 1, 2, 2, 0, "done")
    assert store.client.hgetall(results_key(job)) == results
    assert store.client.hget(audits_key(job), "1") == '{"tier1":"positive","tier2":"negative"}'
    store.purge(job)
    assert store.client.exists(audits_key(job)) == 0


def test_an_audit_of_a_vanished_job_is_refused_not_recreated(store):
    job = make_job(store)
    store.client.delete(f"tango:{{{job}}}:meta")
    with pytest.raises(JobError, match="gone"):
        store.audit(job, [AuditOutcome(0, "positive", "positive")])
    assert store.client.keys(f"tango:{{{job}}}:audits") == []


def test_the_audit_rate_is_recorded_in_the_job(store):
    store.create_job(JobSpec(job="ja", total=4, labels=LABELS, threshold=0.9, chunk_size=2, audit=0.05))
    status = store.status("ja")
    assert (status.audit, status.audited, status.audit_agreed) == (0.05, 0, 0) and "audit" not in status.extra


def test_the_first_worker_fixes_a_label_less_job_and_later_ones_read_it(store):
    store.create_job(JobSpec(job="open", total=2, labels=[], threshold=0.9, chunk_size=2))
    assert store.status("open").waiting_for_workers
    assert store.claim_labels("open", ["cat", "dog"]) == ["cat", "dog"]
    assert store.claim_labels("open", ["negative", "positive"]) == ["cat", "dog"]
    assert store.status("open").labels == ["cat", "dog"] and not store.status("open").waiting_for_workers
    make_job(store, "fixed")
    assert store.claim_labels("fixed", ["cat", "dog"]) == LABELS
    assert store.claim_labels("gone", ["cat", "dog"]) is None


def raw_bits(store: ResultStore, job: str) -> bytes:
    return store.client.execute_command("GET", answered_key(job), NEVER_DECODE=True) or b""


@pytest.mark.parametrize("indices", [[4], [0, 1, 2, 3_000_000_000], [0, 7, 1, 2], [0, -1]])
def test_a_write_naming_an_item_past_the_total_stores_and_counts_nothing(store, indices):
    job = make_job(store, total=4)
    store.write(job, [entry(3)])
    before, bits = store.client.hgetall(meta_key(job)), raw_bits(store, job)
    with pytest.raises(JobError, match=r"outside the job's items 0-3; nothing of it was stored"):
        store.write(job, [entry(i) for i in indices])
    assert store.client.hgetall(meta_key(job)) == before and raw_bits(store, job) == bits
    assert store.client.hkeys(results_key(job)) == ["3"] and store.status(job).state == "running"


@pytest.mark.parametrize("index", ["-1", "007", "1.5", "1e0", "", "x"])
def test_the_write_script_refuses_an_index_that_is_not_a_plain_item_number(store, index):
    """What ``write`` never sends, but a script reached another way must not store either."""
    job = make_job(store, total=10)
    line = f"{index}\t1\t\t{entry(1)[1].to_json()}"
    assert store._write(keys=job_keys(job)[:5], args=["0", line]) == -2
    assert store.client.hlen(results_key(job)) == 0 and raw_bits(store, job) == b""


def test_an_audit_naming_an_item_past_the_total_is_refused_whole(store):
    job = make_job(store, total=2)
    store.write(job, [entry(0), entry(1)])
    checks = [AuditOutcome(0, "positive", "positive"), AuditOutcome(2, "positive", "negative")]
    with pytest.raises(JobError, match="outside the job's items 0-1"):
        store.audit(job, checks)
    status = store.status(job)
    assert (status.audited, status.audit_agreed) == (0, 0) and store.client.exists(audits_key(job)) == 0


def test_a_finished_job_keeps_no_attempt_count_per_chunk(store):
    """Every chunk's starts are counted while the job runs (the attempt cap); once every item is
    answered they serve nothing, and a drained job keeps only its bitmaps and its record."""
    job = make_job(store, total=4)
    assert [store.begin(job, 1, name)[1] for name in ("0", "1", "0")] == [1, 1, 2]
    store.write(job, [entry(0), entry(1), entry(2)])
    assert store.client.hlen(attempts_key(job)) == 2
    store.write(job, [entry(3)])
    assert store.status(job).state == "done" and store.client.exists(attempts_key(job)) == 0
    assert store.begin(job, 2, "1a") == ("done", 1)  # a trailing audit chunk is still counted
