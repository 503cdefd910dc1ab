"""Audit samples are reproducible: the same for any chunking, independent across jobs."""
from __future__ import annotations

import numpy as np
import pytest

from common.sampling import audit_mask


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
