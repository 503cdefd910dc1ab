"""A calibrating job's pieces without workers: the calibration chunks on the wire, the tiers' decisions on
them, the threshold fixed once on a real redis-server, and what the sweep counts as in flight."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from common.errors import MessageError
from common.guarantee import QualityTarget, certify_target
from common.queue import calibration
from common.queue.audit import quality_lines, quality_report
from common.queue.broker import queued_chunks
from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.decisions import decide_tier1, decide_tier2
from common.queue.messages import Chunk, WorkItem
from common.queue.results import ResultRecord
from common.queue.store import ResultStore
from common.queue.submission import SubmitRequest, plan_job, resume
from common.queue.sweeper import feed_room
from common.data.fingerprint import PinnedFile
from common.sampling import calibration_sample

LABELS = ("negative", "positive")
OUTPUTS = np.array([0, 1])


def test_tier1_forwards_every_calibration_item_with_its_answer_and_tier2_keeps_the_triple():
    items = tuple(WorkItem(10 + n, f"id{n}", f"text {n}", gold="positive") for n in range(4))
    probs = np.array([[0.99, 0.01], [0.3, 0.7], [0.55, 0.45], [0.02, 0.98]])
    chunk = Chunk("job-c", 0, 1, 1.0, LABELS, items, audit=0.5, calibrate=True)
    first = decide_tier1(chunk, probs, OUTPUTS, "small")
    assert first.entries == [] and first.audit == [] and len(first.forward) == 4  # even the sure ones go on
    forwarded = Chunk.decode(json.loads(json.dumps(chunk.forward(first.forward).encode())))
    assert forwarded.calibrate and forwarded.tier == 2 and forwarded.name == "0c"
    assert [item.tier1_answer() for item in forwarded.items] == [(0.99, "negative"), (0.7, "positive"),
                                                                 (0.55, "negative"), (0.98, "positive")]
    second = decide_tier2(forwarded, np.array([[0.2, 0.8]] * 4), OUTPUTS, "big")
    assert [(index, record.label, record.tier) for index, record, _ in second.entries] == [
        (10 + n, "positive", 2) for n in range(4)]
    assert second.triples == [(10, 0.99, "negative", "positive", "positive"), (11, 0.7, "positive", "positive",
                                                                               "positive"),
                              (12, 0.55, "negative", "positive", "positive"), (13, 0.98, "positive", "positive",
                                                                               "positive")]


@pytest.mark.parametrize("tier, calibrate, calib, message", [
    (1, True, "0.9\tnegative", "tier 2 only"),
    (2, True, None, "on every item of a tier-2 calibration chunk"),
    (2, False, "0.9\tnegative", "on every item of a tier-2 calibration chunk and on no other"),
    (2, True, "1.5\tnegative", "'calib' must be a confidence in [0, 1]"),
    (2, True, "nan\tnegative", "'calib' must be a confidence in [0, 1]"),
    (2, True, "0.9", "'calib' must be a confidence in [0, 1]"),
])
def test_a_forged_calibration_chunk_is_refused(tier, calibrate, calib, message):
    raw = Chunk("job-c", 0, tier, 1.0, LABELS, (WorkItem(0, "a", "text"),), calibrate=calibrate).encode()
    if calib is not None:
        raw["calib"] = [calib]
    with pytest.raises(MessageError, match=re.escape(message)):
        Chunk.decode(raw)


def recorded_job(redis_url: str, tmp_path, job: str, **request):
    """A job of 300 items recorded but not fed (its submit died at once): the store and a client app."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(300)))
    settings = ClusterSettings(redis_url=redis_url)
    store, app = ResultStore.open(settings), make_app("client", settings)
    with PinnedFile(str(path)) as corpus:
        store.create_job(plan_job(store, SubmitRequest(path=str(path), chunk_size=16, job_id=job, labels=LABELS,
                                                       **request), corpus).record)
    store.end_feeding(job)
    return store, app


@pytest.fixture()
def calibrating(redis_url, tmp_path):
    """Job ``cal``: 300 items with a quality target."""
    return recorded_job(redis_url, tmp_path, "cal", target=QualityTarget(0.2), window=64)


def answer_sample(store, size: int, rng: np.random.Generator) -> list[tuple]:
    sample = calibration_sample(300, size, "cal")
    triples = [(int(i), float(rng.uniform(0.5, 1.0)), LABELS[int(rng.integers(2))], "positive", None)
               for i in sample]
    store.record_calibration("cal", triples)
    store.write("cal", [(i, ResultRecord(f"x{i}", "positive", 0.9, 2, "big"), None) for i, *_ in triples])
    return triples


def test_resume_sends_only_the_sample_until_it_is_answered_then_fixes_the_threshold_once(calibrating):
    store, app = calibrating
    status = store.status("cal")
    size = calibration.JobCalibration.of(status).size
    assert status.extra["phase"] == "calibrating" and status.threshold == 1.0 and 0 < size < 300
    assert quality_lines(status) == [f"quality   disagreement at most 0.2 at 90% confidence: calibrating, 0 of {size} "
                                     f"sample items answered by both tiers (they cost about "
                                     f"{quality_report(status)['sample_cost']:.0f} big-model items; expected saving "
                                     f"{quality_report(status)['expected_saving']:.0f})"]
    assert resume(store, app, "cal", limit=1000).items == size  # the sweep's call: only the sample, no wait
    sent = [chunk for chunk in queued_chunks(store.client, "tier1")]
    assert all(chunk.calibrate and chunk.threshold == 1.0 for chunk in sent)
    assert sorted(item.index for chunk in sent for item in chunk.items) == calibration_sample(300, size, "cal").tolist()
    assert store.status("cal").extra["phase"] == "calibrating"
    triples = answer_sample(store, size, np.random.default_rng(0))
    store.client.delete("tier1")
    resumed = resume(store, app, "cal", limit=1000)  # the sample is answered: certified, then the rest
    status = store.status("cal")
    expected = certify_target(np.array([t[1] for t in triples]), np.array([LABELS.index(t[2]) for t in triples]),
                              np.array([1] * size), 300, QualityTarget(0.2), 2)
    assert status.extra["phase"] == "certified" and status.threshold == expected.threshold
    assert resumed.items == 300 - size and status.state == "running"
    report = quality_report(status)
    assert report["phase"] == "certified" and report["guarantee"]["threshold"] == expected.threshold
    assert quality_lines(status)[0].endswith(expected.describe())
    rest = [chunk for chunk in queued_chunks(store.client, "tier1")]
    assert all(not chunk.calibrate and chunk.threshold == expected.threshold for chunk in rest)
    late = store.fix_threshold("cal", dataclasses.replace(expected, threshold=0.5))
    assert late[0] == expected.threshold  # the first fix stands


def test_the_sweep_counts_only_the_phases_items_in_flight(calibrating):
    store, _ = calibrating
    size = calibration.JobCalibration.of(store.status("cal")).size
    sample = calibration_sample(300, size, "cal")
    store.mark_fed("cal", 250, "certified")  # a note from another phase (a feeder of the rest) is ignored
    assert store.status("cal").fed == 0
    store.mark_fed("cal", int(sample[9]) + 1, "calibrating")  # ten sample items queued, none answered
    status = store.status("cal")
    assert calibration.in_flight(status) == 10 and feed_room(status) == 64 - 10
    answer_sample(store, size, np.random.default_rng(1))
    assert calibration.in_flight(store.status("cal")) <= 0


@pytest.mark.parametrize("target, threshold", [(QualityTarget(0.001), None), (None, 1.0)])
def test_a_job_at_threshold_one_goes_straight_to_tier2(redis_url, tmp_path, target, threshold):
    """No tier-1 answer can stand at 1.0 (a corpus too small to pay for its sample, or a user's --threshold 1),
    so tier 1 never scores it: the job costs the big model alone, as ``tango label`` does."""
    store, app = recorded_job(redis_url, tmp_path, "all2", target=target,
                              **({} if threshold is None else {"threshold": threshold}))
    status = store.status("all2")
    assert status.threshold == 1.0 and status.extra.get("phase", "") != "calibrating"
    assert resume(store, app, "all2").items == 300
    assert queued_chunks(store.client, "tier1") == []
    sent = queued_chunks(store.client, "tier2")
    assert all(chunk.tier == 2 and not chunk.calibrate for chunk in sent)
    assert sorted(item.index for chunk in sent for item in chunk.items) == list(range(300))
