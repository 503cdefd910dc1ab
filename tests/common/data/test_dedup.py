"""The duplicate-id finder: every repeated id is a candidate whatever the filter's size, and the
exact check keeps the first occurrence and names every later one."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.data import dedup

ids = st.lists(st.text(st.sampled_from("abcdef"), max_size=3), max_size=200)


def repeats(values: list[str]) -> set[str]:
    return {value for value, n in Counter(values).items() if n > 1}


@pytest.mark.parametrize("max_bits, round_ids", [
    (dedup.MAX_BITS, dedup.ROUND_IDS),  # as shipped
    (8, 10**9),  # one byte of filter: nearly every id is a false positive
    (64, 7),  # a small filter over many rounds
])
@settings(max_examples=40, deadline=None)
@given(values=ids)
def test_every_repeated_id_is_a_candidate(max_bits, round_ids, values):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dedup, "MAX_BITS", max_bits)
        patch.setattr(dedup, "ROUND_IDS", round_ids)
        found = dedup.possibly_repeated(lambda: iter(values), len(values))
    assert repeats(values) <= found <= set(values)


def test_a_large_clean_stream_has_few_candidates():
    values = [f"doc-{n:06d}" for n in range(200_000)]
    assert len(dedup.possibly_repeated(lambda: iter(values), len(values))) < 200_000 * 0.002


@pytest.mark.parametrize("min_bits, per_id", [(dedup.MIN_BITS, dedup.PROBE_BITS_PER_ID), (8, 0)])
@settings(max_examples=40, deadline=None)
@given(values=ids)
def test_a_probe_hits_every_repeat_and_never_rejects(min_bits, per_id, values):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dedup, "MIN_BITS", min_bits)
        patch.setattr(dedup, "PROBE_BITS_PER_ID", per_id)
        probe = dedup.IdProbe(len(values))
        assert not any(probe(line, value) for line, value in enumerate(values))
        assert repeats(values) <= probe.hits() <= set(values)


def test_a_probe_of_a_large_clean_stream_has_no_hits():
    values = [f"doc-{n:07d}" for n in range(1_000_000)]
    probe = dedup.IdProbe(len(values))
    for line, value in enumerate(values):
        probe(line, value)
    assert probe.hits() == set()


def test_repeats_inside_one_batch_are_found():
    values = ["x", "y", "x"] + [f"z{n}" for n in range(dedup.BATCH)] + ["y"]
    assert dedup.possibly_repeated(lambda: iter(values), len(values)) >= {"x", "y"}


def test_each_round_reads_the_stream_again(monkeypatch):
    monkeypatch.setattr(dedup, "ROUND_IDS", 10)
    reads = []
    values = [str(n % 30) for n in range(45)]
    found = dedup.possibly_repeated(lambda: reads.append(1) or iter(values), len(values))
    assert len(reads) == 5 and found >= {str(n) for n in range(15)}


@pytest.mark.parametrize("ids, bits", [(0, dedup.MIN_BITS), (100_000, 1 << 21), (10**9, dedup.MAX_BITS)])
def test_the_filter_is_sized_for_the_stream_and_capped(ids, bits):
    assert dedup.filter_bits(ids) == bits


def test_repeated_ids_are_exact_whatever_the_candidates():
    repeated = dedup.RepeatedIds(["a", "b", "never"])
    stream = ["a", "c", "b", "a", "c", "b", "a"]
    assert [repeated(line, value) for line, value in enumerate(stream, 1)] == [
        False, False, False, True, False, True, True]  # "c" is no candidate, so never a repeat
