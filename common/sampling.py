"""Which items a job samples: its audit of accepted items and its calibration sample, by keyed hashes of positions.

The choice is a pure function of (job, index), so every worker, any chunking
and a redelivered chunk pick the same sample, and ``tango label`` picks the
one ``tango submit`` would. It lives apart from ``common.risk`` because tier-1
workers draw the sample on every chunk and should not pay scipy's import
(about a second of each worker's start) for it.
"""
from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Full-avalanche 64-bit mixer: neighbouring indexes land on unrelated values."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _keyed_hash(name: str, person: bytes, idx: np.ndarray) -> np.ndarray:
    """A bijection of the 64-bit indexes keyed by ``name``: no ties, no dependence on numpy's RNG streams."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16, person=person).digest()
    key1, key2 = (np.uint64(int.from_bytes(digest[i:i + 8], "little")) for i in (0, 8))
    with np.errstate(over="ignore"):
        return _splitmix64(_splitmix64(idx.astype(np.uint64) + key1) ^ key2)


def _integer_indexes(indexes: np.ndarray) -> np.ndarray:
    idx = np.asarray(indexes)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indexes must be integers, got {idx.dtype}")
    return idx


def audit_mask(job: str, indexes: np.ndarray, rate: float) -> np.ndarray:
    """Keyed per-item coin so any worker, any chunking, picks the same audit sample."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"audit rate must be in [0, 1], got {rate}")
    idx = _integer_indexes(indexes)
    if idx.size == 0:
        return np.zeros(idx.shape, bool)
    z = _keyed_hash(job, b"tango-audit", idx)
    return (z >> np.uint64(11)).astype(float) * 2.0 ** -53 < rate


_CALIBRATION = b"tango-calib"
_CHUNK = 1 << 20


def calibration_keys(seed: int | str, indexes: np.ndarray) -> np.ndarray:
    """Each item's rank key for the calibration sample: the sample is the ``size`` smallest keys."""
    idx = _integer_indexes(indexes)
    return _keyed_hash(str(seed), _CALIBRATION, idx) if idx.size else np.zeros(idx.shape, np.uint64)


def calibration_cutoff(total: int, size: int, seed: int | str) -> int:
    """The largest key in the sample, so a feeder reading the corpus once tests ``key <= cutoff`` per item.

    The keys are a keyed bijection of the indexes, hence distinct: exactly
    ``size`` items pass, and every subset of that size is equally likely when
    the hash is modelled as a random permutation. Chunked, so memory stays
    O(size + chunk) for any corpus. -1 when ``size`` is 0.
    """
    if not 0 <= size <= total:
        raise ValueError(f"a calibration sample needs 0 <= size <= total, got size={size}, total={total}")
    if size == 0:
        return -1
    best = np.zeros(0, np.uint64)
    for start in range(0, total, _CHUNK):
        keys = np.concatenate([best, calibration_keys(seed, np.arange(start, min(total, start + _CHUNK)))])
        best = keys if len(keys) <= size else np.partition(keys, size - 1)[:size]
    return int(best.max())


def in_calibration(seed: int | str, indexes: np.ndarray, cutoff: int) -> np.ndarray:
    """Membership of ``indexes`` in the sample whose ``calibration_cutoff`` is ``cutoff``: any chunking agrees."""
    keys = calibration_keys(seed, indexes)
    return np.zeros(keys.shape, bool) if cutoff < 0 else keys <= np.uint64(cutoff)


def calibration_sample(total: int, size: int, seed: int | str) -> np.ndarray:
    """A seeded uniform sample without replacement of ``size`` of ``range(total)``, sorted.

    A pure function of (total, size, seed) built from integer hashing, so every
    process, platform and numpy version draws the same items (numpy's
    Generator streams are not promised stable across versions).
    """
    cutoff = calibration_cutoff(total, size, seed)
    parts = [start + np.flatnonzero(in_calibration(seed, np.arange(start, min(total, start + _CHUNK)), cutoff))
             for start in range(0, total, _CHUNK)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
