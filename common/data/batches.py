"""Batches of items: cutting a stream into lists, and a batch's second texts.

Submit's chunks, ``tango label``'s chunks and the duplicate-id check's batches are all cut by
``batched``, and every batch that reaches a model takes its pairs from ``pair_texts``, so the
cluster, the in-process commands and training agree on what a pair is.
"""
from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Paired(Protocol):
    """An item that may carry a second text (``common.data.corpus.Item``, a chunk's ``WorkItem``)."""

    @property
    def text_pair(self) -> str | None: ...


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items, the last one shorter when the items run out
    (``itertools.batched`` from Python 3.12, as lists)."""
    if size < 1:
        raise ValueError(f"a batch needs at least one item, got size {size}")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def pair_texts(items: Sequence[Paired]) -> list[str] | None:
    """The batch's second texts, or None when no item has one.

    An item has a pair when its ``text_pair`` is not None, so an empty second
    text is still a pair (the corpus reader refuses empty texts, but a chunk's
    items are not all read from a file). In a batch with pairs, an item without
    one gets an empty second text: the model takes one per item or none.
    """
    if all(item.text_pair is None for item in items):
        return None
    return [item.text_pair or "" for item in items]
