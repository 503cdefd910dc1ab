"""Audit samples are reproducible: the same for any chunking, independent across jobs."""
from __future__ import annotations

import numpy as np
import pytest

from common.sampling import audit_mask, calibration_cutoff, calibration_sample, in_calibration


def test_audit_mask_is_deterministic_and_chunking_free() -> None:
    idx = np.arange(100_000)
    mask = audit_mask("job-a", idx, 0.1)
    assert np.array_equal(mask, audit_mask("job-a", idx.copy(), 0.1))
    assert abs(mask.mean() - 0.1) < 0.005
    chunks = np.concatenate([audit_mask("job-a", c, 0.1) for c in np.array_split(idx, 7)])
    assert np.array_equal(chunks, mask)
    other = audit_mask("job-b", idx, 0.1)
    assert not np.array_equal(other, mask)
    assert abs((mask & other).mean() - 0.01) < 0.002  # different jobs sample independently


def test_audit_mask_rate_edges() -> None:
    idx = np.arange(1000)
    assert not audit_mask("j", idx, 0.0).any()
    assert audit_mask("j", idx, 1.0).all()
    assert audit_mask("j", np.array([], dtype=int), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="1.5"):
        audit_mask("j", idx, 1.5)


def test_calibration_sample_is_pinned_sorted_and_exact_in_size() -> None:
    # Pure integer hashing: these never change with the platform or numpy's version.
    assert calibration_sample(1000, 5, 7).tolist() == [81, 397, 728, 732, 767]
    assert calibration_sample(10**6, 3, "job-1").tolist() == [280174, 390016, 897454]
    sample = calibration_sample(50_000, 1234, 3)
    assert len(sample) == len(np.unique(sample)) == 1234 and np.all(np.diff(sample) > 0)
    assert calibration_sample(10, 0, 1).size == 0 and calibration_sample(10, 10, 1).tolist() == list(range(10))
    with pytest.raises(ValueError, match="size=11"):
        calibration_sample(10, 11, 1)


def test_calibration_membership_is_streaming_and_chunking_free() -> None:
    total, size, seed = 30_000, 700, "job-x"
    cutoff = calibration_cutoff(total, size, seed)
    chunks = np.array_split(np.arange(total), 13)
    members = np.concatenate([c[in_calibration(seed, c, cutoff)] for c in chunks])
    assert np.array_equal(members, calibration_sample(total, size, seed))
    assert not np.array_equal(calibration_sample(total, size, "job-y"), members)


def test_calibration_sample_is_uniform_over_items() -> None:
    total, size, seeds = 200, 20, 3000
    hits = np.zeros(total)
    for seed in range(seeds):
        hits[calibration_sample(total, size, seed)] += 1
    expected = seeds * size / total
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    assert chi2 < 199 + 5 * np.sqrt(2 * 199)  # within 5 sd of a chi-square on 199 degrees of freedom
