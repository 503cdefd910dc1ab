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


def test_a_chunk_travels_as_columns():
    encoded = chunk().encode()
    assert (encoded["v"], encoded["i"], encoded["ids"], encoded["texts"]) == (2, [0, 5], ["a", "b"],
                                                                             ["good film", "premise"])
    assert encoded["pairs"] == [None, "hypothesis"] and encoded["gold"] == [None, "positive"]


def test_optional_columns_are_left_out():
    encoded = Chunk("job-1", 3, 1, 0.8, ("negative", "positive"), (WorkItem(0, "a", "good film"),)).encode()
    assert not {"pairs", "gold", "audited", "items", "part", "audit"} & set(encoded)


def version_1(**change) -> dict:
    """A message as submitters before the columns wrote it: one object per item."""
    return {"v": 1, "job": "job-1", "chunk": 3, "tier": 1, "threshold": 0.8, "labels": ["negative", "positive"],
            "items": [{"i": 0, "id": "a", "text": "good film"},
                      {"i": 5, "id": "b", "text": "premise", "text_pair": "hypothesis", "gold": "positive"}],
            **change}


def test_a_version_1_message_still_decodes_to_the_same_chunk():
    assert Chunk.decode(version_1()) == chunk()


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
    ({"v": True}, "version"),
    ({"i": []}, "'i' must be a non-empty list"),
    ({"i": [0, -1]}, "item 1: 'i' must hold non-negative integers, got -1"),
    ({"i": [0, True]}, "item 1: 'i'"),
    ({"i": [0, 1.0]}, "item 1: 'i' must hold non-negative integers, got 1.0"),
    ({"i": [0, "1"]}, "item 1: 'i' must hold non-negative integers"),
    ({"i": [0, 0]}, "repeated"),
    ({"i": list(range(20_000)), "ids": ["a"] * 20_000, "texts": ["t"] * 20_000}, "at most"),
    ({"ids": ["a"]}, "'ids' must be a list of 2 values"),
    ({"texts": "good film"}, "'texts' must be a list"),
    ({"texts": ["t", 3]}, "item 1: 'texts' must hold strings, got int"),
    ({"texts": ["t", None]}, "item 1: 'texts' must hold strings, got NoneType"),
    ({"gold": [None, 1]}, "item 1: 'gold' must hold strings"),
    ({"pairs": ["x"]}, "'pairs' must be a list of 2"),
])
def test_malformed_chunks_are_refused_naming_the_field(change, message):
    raw = {**chunk().encode(), **change}
    with pytest.raises(MessageError, match=message):
        Chunk.decode(raw)


@pytest.mark.parametrize("change, message", [
    ({"items": []}, "'items'"),
    ({"items": [{"i": -1, "id": "a", "text": "t"}]}, "'i'"),
    ({"items": [{"i": 1.5, "id": "a", "text": "t"}]}, "'i' must be a non-negative integer"),
    ({"items": [{"i": 0, "id": "a", "text": 3}]}, "item 0: 'text' must be a string"),
    ({"items": [{"i": 0, "id": "a", "text": "t"}, {"i": 0, "id": "b", "text": "u"}]}, "repeated"),
    ({"items": [{"i": 0, "id": "a", "text": "t", "audit": "positive"}, {"i": 1, "id": "b", "text": "u"}],
      "tier": 2}, "mixed"),
])
def test_malformed_version_1_chunks_are_refused_naming_the_field(change, message):
    with pytest.raises(MessageError, match=message):
        Chunk.decode(version_1(**change))


def test_a_non_object_is_refused():
    with pytest.raises(MessageError):
        Chunk.decode(["not", "a", "chunk"])


def test_the_audit_fields_survive_json_and_are_optional():
    original = Chunk("job-1", 3, 2, 0.8, ("negative", "positive"),
                     (WorkItem(0, "a", "good film", audit="positive"),), audit=0.05)
    raw = json.loads(json.dumps(original.encode()))
    assert raw["audit"] == 0.05 and raw["audited"] == ["positive"]
    assert Chunk.decode(raw) == original
    old = {"v": 1, "job": "job-1", "chunk": 3, "tier": 1, "threshold": 0.8, "labels": ["negative", "positive"],
           "items": [{"i": 0, "id": "a", "text": "good film"}]}  # a message from before the audit
    decoded = Chunk.decode(old)
    assert decoded.audit == 0.0 and decoded.items[0].audit is None and not decoded.is_audit
    assert "audit" not in decoded.encode() and "audited" not in decoded.encode()


def test_an_audit_chunk_has_its_own_name_and_attempt_count():
    items = (WorkItem(0, "a", "x", audit="positive"), WorkItem(1, "b", "y", audit="negative"))
    audit = Chunk("job-1", 12, 2, 0.8, ("negative", "positive"), items)
    assert audit.is_audit and audit.name == "12a" and audit.halves()[1].name == "12a/1"
    assert chunk().name == "3"


@pytest.mark.parametrize("change, message", [
    ({"audit": 1.5}, "'audit'"),
    ({"audit": "all"}, "'audit'"),
    ({"tier": 2, "audited": ["positive", 1]}, "'audited' must hold strings"),
    ({"tier": 2, "audited": ["positive", None]}, "mixed"),
    ({"tier": 1, "audited": ["positive", "negative"]}, "tier 2 only"),
])
def test_malformed_audit_fields_are_refused(change, message):
    with pytest.raises(MessageError, match=message):
        Chunk.decode({**chunk().encode(), **change})


def test_a_tier_1_chunk_may_wait_for_its_labels():
    raw = {**chunk().encode(), "labels": []}
    assert Chunk.decode(raw).labels == ()
