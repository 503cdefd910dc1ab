"""Which accepted items a job's audit checks: a keyed hash of the job and each item's position.

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


def audit_mask(job: str, indexes: np.ndarray, rate: float) -> np.ndarray:
    """Keyed per-item coin so any worker, any chunking, picks the same audit sample."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"audit rate must be in [0, 1], got {rate}")
    idx = np.asarray(indexes)
    if idx.size == 0:
        return np.zeros(idx.shape, bool)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"indexes must be integers, got {idx.dtype}")
    digest = hashlib.blake2b(job.encode("utf-8"), digest_size=16, person=b"tango-audit").digest()
    key1, key2 = (np.uint64(int.from_bytes(digest[i:i + 8], "little")) for i in (0, 8))
    with np.errstate(over="ignore"):
        z = _splitmix64(_splitmix64(idx.astype(np.uint64) + key1) ^ key2)
    return (z >> np.uint64(11)).astype(float) * 2.0 ** -53 < rate
