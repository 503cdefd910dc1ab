"""Find the ids a stream of records repeats, exactly, in memory that does not grow with the stream.

A set of every id (or of their 64-bit hashes) made ``tango submit`` grow with the corpus
(bench/RESULTS.md, section (8)), and a hash collision rejected a valid file. Instead, one pass
puts every id through a Bloom filter of fixed size: an id that hits it *may* repeat an earlier
one, and an id that repeats always hits it. Only those few candidates are kept, as strings, and
``RepeatedIds`` then decides each record exactly while the file is read again: the filter's false
positives cost a little memory, never a wrong answer. Beyond what one filter holds, the ids are
split by hash into rounds, one pass each, so the filter never saturates.

A pass that reads the file anyway can look for candidates on the way (``IdProbe``): with a
filter four times sparser, a file without repeats almost never has one, and then that pass
alone has ruled duplicates out; only a file with a candidate is read once more, exactly.
"""
from __future__ import annotations

from itertools import compress
from typing import Callable, Iterable

import numpy as np

from common.data.batches import batched

BITS_PER_ID = 12  # with HASHES = 8: under 0.2% false positives when the filter is full
HASHES = 8
MIN_BITS = 1 << 16  # 8 KiB
MAX_BITS = 1 << 27  # 16 MiB, the most a filter takes
ROUND_IDS = MAX_BITS // BITS_PER_ID  # ids one round holds (11.2 million); more take more rounds
BATCH = 4096  # ids hashed and tested per numpy call
PROBE_BITS_PER_ID = 48  # with PROBE_HASHES = 12: under one false candidate in 300 files of 2.8 million ids
PROBE_HASHES = 12


def possibly_repeated(read_ids: Callable[[], Iterable[str]], bound: int) -> set[str]:
    """Every id that ``read_ids()`` yields more than once, and a few that it yields once.

    ``bound`` is at most how many ids there are (a file's line count); it sizes the filter
    and the rounds, so a wrong bound costs memory or time, never exactness. ``read_ids`` is
    called once per round.
    """
    rounds = -(-max(bound, 1) // ROUND_IDS)
    bits = filter_bits(-(-bound // rounds))
    found: set[str] = set()
    for part in range(rounds):
        bloom = BloomFilter(bits)
        for batch in batched(read_ids(), BATCH):
            found.update(bloom.add(batch, part, rounds))
    return found


def filter_bits(ids: int, per_id: int = BITS_PER_ID) -> int:
    """A power of two (positions are masked, not divided) of at least ``per_id`` bits per id."""
    wanted = max(ids * per_id, 1)
    return min(max(1 << (wanted - 1).bit_length(), MIN_BITS), MAX_BITS)


class BloomFilter:
    """Bits set by each id's ``hashes`` positions, from Python's ``hash`` split in two (double hashing).

    ``hash`` is enough: exactness comes from ``RepeatedIds``, not from the hash, and its per-process
    key means nobody can craft ids that all collide in a given run.
    """

    def __init__(self, bits: int, hashes: int = HASHES) -> None:
        self.mask = np.uint64(bits - 1)
        self.steps = np.arange(hashes, dtype=np.uint64)
        self.bytes = np.zeros(max(bits // 8, 1), dtype=np.uint8)

    def add(self, ids: list[str], part: int = 0, parts: int = 1) -> list[str]:
        """Add the ids of round ``part`` of ``parts``; returns those that may have been added before,
        earlier in this batch included."""
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)).view(np.uint64)
        if parts > 1:
            mine = hashes % np.uint64(parts) == np.uint64(part)
            ids, hashes = list(compress(ids, mine)), hashes[mine]
        positions = self._positions(hashes)
        index, bit = positions >> np.uint64(3), np.left_shift(1, positions & np.uint64(7)).astype(np.uint8)
        present = (self.bytes[index] & bit).all(axis=1) | _repeated_within(hashes)
        np.bitwise_or.at(self.bytes, index.ravel(), bit.ravel())
        return list(compress(ids, present))

    def _positions(self, hashes: np.ndarray) -> np.ndarray:
        low, high = hashes & np.uint64(0xFFFFFFFF), (hashes >> np.uint64(32)) | np.uint64(1)
        return (low[:, None] + high[:, None] * self.steps) & self.mask


def _repeated_within(hashes: np.ndarray) -> np.ndarray:
    """Which hashes equal an earlier one of the same batch, whose bits the filter does not hold yet."""
    order = np.argsort(hashes, kind="stable")
    ranked = hashes[order]
    repeated = np.zeros(len(hashes), dtype=bool)
    repeated[order[1:][ranked[1:] == ranked[:-1]]] = True
    return repeated


class IdProbe:
    """Collects the candidates of one reading pass, as it goes, in a filter sparse enough that a file
    without repeats almost never yields one. Asked like ``RepeatedIds``, it answers "not repeated"
    to every record: a caller whose ``hits()`` come back empty knows that was exact."""

    def __init__(self, bound: int) -> None:
        self._bloom = BloomFilter(filter_bits(bound, PROBE_BITS_PER_ID), PROBE_HASHES)
        self._pending: list[str] = []
        self._hits: set[str] = set()

    @staticmethod
    def fits(bound: int) -> bool:
        """Whether a file of at most ``bound`` ids fits one probe; a larger one takes the rounds."""
        return bound * PROBE_BITS_PER_ID <= MAX_BITS

    def __call__(self, line: int, item_id: str) -> bool:
        self._pending.append(item_id)
        if len(self._pending) >= BATCH:
            self._flush()
        return False

    def hits(self) -> set[str]:
        """Every id asked about so far that repeats an earlier one, and rarely one that does not."""
        self._flush()
        return self._hits

    def _flush(self) -> None:
        if self._pending:
            self._hits.update(self._bloom.add(self._pending))
            self._pending = []


class RepeatedIds:
    """Whether a record's id was an earlier record's, exact, knowing only the candidates.

    Records must be asked about in file order, each once: the first time a candidate is asked
    about it is new, every later time a repeat. An id that is not a candidate never repeats.
    """

    def __init__(self, candidates: Iterable[str]) -> None:
        self._seen = dict.fromkeys(candidates, False)

    def __call__(self, line: int, item_id: str) -> bool:
        seen = self._seen.get(item_id)
        if seen is None:
            return False
        self._seen[item_id] = True
        return seen
