"""Chunks on the queue: JSON in, JSON out, and every field checked on the way in."""
from __future__ import annotations

import json

import pytest

from common.errors import MessageError
from common.queue.messages import Chunk, WorkItem


def chunk() -> Chunk:
    items = (WorkItem(0, "a", "good film"), WorkItem(5, "b", "premise", "hypothesis", gold="positive"))
    return Chunk("job-1", 3, 1, 0.8, ("negative", "positive"), items)


def test_a_chunk_survives_json():
    original = chunk()
    assert Chunk.decode(json.loads(json.dumps(original.encode()))) == original


def test_optional_fields_are_left_out():
    encoded = chunk().encode()["items"]
    assert encoded[0] == {"i": 0, "id": "a", "text": "good film"}
    assert encoded[1]["text_pair"] == "hypothesis" and encoded[1]["gold"] == "positive"


def test_forward_keeps_the_job_and_moves_to_tier_2():
    forwarded = chunk().forward([chunk().items[1]])
    assert (forwarded.job, forwarded.chunk, forwarded.tier, len(forwarded.items)) == ("job-1", 3, 2, 1)
    assert forwarded.items[0].index == 5


@pytest.mark.parametrize("change, message", [
    ({"v": 99}, "version"),
    ({"job": "x}:meta"}, "invalid job id"),
    ({"job": 7}, "'job' must be a string"),
    ({"tier": 3}, "'tier'"),
    ({"threshold": "high"}, "'threshold'"),
    ({"threshold": 1.5}, "'threshold'"),
    ({"labels": ["only"]}, "'labels'"),
    ({"labels": [], "tier": 2}, "'labels'"),
    ({"items": []}, "'items'"),
    ({"items": [{"i": -1, "id": "a", "text": "t"}]}, "'i'"),
    ({"items": [{"i": 0, "id": "a", "text": 3}]}, "'text' must be a string"),
    ({"items": [{"i": 0, "id": "a", "text": "t"}, {"i": 0, "id": "b", "text": "u"}]}, "repeated"),
])
def test_malformed_chunks_are_refused_naming_the_field(change, message):
    raw = {**chunk().encode(), **change}
    with pytest.raises(MessageError, match=message):
        Chunk.decode(raw)


def test_a_non_object_is_refused():
    with pytest.raises(MessageError):
        Chunk.decode(["not", "a", "chunk"])


def test_the_audit_fields_survive_json_and_are_optional():
    original = Chunk("job-1", 3, 2, 0.8, ("negative", "positive"),
                     (WorkItem(0, "a", "good film", audit="positive"),), audit=0.05)
    raw = json.loads(json.dumps(original.encode()))
    assert raw["audit"] == 0.05 and raw["items"][0]["audit"] == "positive"
    assert Chunk.decode(raw) == original
    old = {"v": 1, "job": "job-1", "chunk": 3, "tier": 1, "threshold": 0.8, "labels": ["negative", "positive"],
           "items": [{"i": 0, "id": "a", "text": "good film"}]}  # a message from before the audit
    decoded = Chunk.decode(old)
    assert decoded.audit == 0.0 and decoded.items[0].audit is None and not decoded.is_audit
    assert "audit" not in decoded.encode() and "audit" not in decoded.encode()["items"][0]


def test_an_audit_chunk_has_its_own_name_and_attempt_count():
    items = (WorkItem(0, "a", "x", audit="positive"), WorkItem(1, "b", "y", audit="negative"))
    audit = Chunk("job-1", 12, 2, 0.8, ("negative", "positive"), items)
    assert audit.is_audit and audit.name == "12a" and audit.halves()[1].name == "12a/1"
    assert chunk().name == "3"


@pytest.mark.parametrize("change, message", [
    ({"audit": 1.5}, "'audit'"),
    ({"audit": "all"}, "'audit'"),
    ({"items": [{"i": 0, "id": "a", "text": "t", "audit": 1}]}, "'audit' must be a string"),
    ({"items": [{"i": 0, "id": "a", "text": "t", "audit": "positive"}, {"i": 1, "id": "b", "text": "u"}]}, "mixed"),
    ({"tier": 1, "items": [{"i": 0, "id": "a", "text": "t", "audit": "positive"}]}, "tier 2 only"),
])
def test_malformed_audit_fields_are_refused(change, message):
    with pytest.raises(MessageError, match=message):
        Chunk.decode({**chunk().encode(), **change})


def test_a_tier_1_chunk_may_wait_for_its_labels():
    raw = {**chunk().encode(), "labels": []}
    assert Chunk.decode(raw).labels == ()
