"""Cutting a stream into batches, and what a batch's second texts are."""
from __future__ import annotations

import pytest

from common.data.batches import batched, pair_texts
from common.data.corpus import Item
from common.queue.messages import WorkItem


@pytest.mark.parametrize("count, size, sizes", [(0, 3, []), (1, 3, [1]), (6, 3, [3, 3]), (7, 3, [3, 3, 1]),
                                                (5, 1, [1] * 5)])
def test_batches_keep_order_and_only_the_last_is_short(count, size, sizes):
    batches = list(batched(iter(range(count)), size))
    assert [len(b) for b in batches] == sizes
    assert [n for b in batches for n in b] == list(range(count))


def test_batches_are_cut_lazily_from_a_stream():
    def stream():
        yield from range(4)
        raise AssertionError("read past the first batch")

    assert next(batched(stream(), 2)) == [0, 1]


def test_a_batch_needs_a_positive_size():
    with pytest.raises(ValueError, match="size 0"):
        next(batched([1], 0))


def item(pair: str | None) -> Item:
    return Item("id", "a text", pair)


def test_no_pair_anywhere_is_no_pairs():
    assert pair_texts([item(None), item(None)]) is None
    assert pair_texts([]) is None


def test_an_empty_second_text_is_still_a_pair():
    assert pair_texts([item(""), item("")]) == ["", ""]


def test_in_a_batch_with_pairs_an_item_without_one_gets_an_empty_second_text():
    assert pair_texts([item("h"), item(None)]) == ["h", ""]


def test_a_chunk_s_items_answer_the_same():
    assert pair_texts([WorkItem(0, "a", "t", ""), WorkItem(1, "b", "u", None)]) == ["", ""]
    assert pair_texts([WorkItem(0, "a", "t")]) is None
