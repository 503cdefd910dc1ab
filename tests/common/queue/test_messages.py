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
