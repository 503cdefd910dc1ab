"""The demo's job-level promise: the job `tango label --max-disagreement D --seed demo` would run, replayed on
scores the demo already has; a corpus too small to pay for its sample is said to be so."""
from __future__ import annotations

import numpy as np

from cli.demo.promise import SEED, job_promise, promise_lines
from common.guarantee import QualityTarget, certify_target
from common.sampling import calibration_sample


def scores(total: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, total)
    small = rng.integers(0, 2, total)
    flip = rng.random(total) < 0.3 * ((1.0 - confidence) / 0.5) ** 2
    return confidence, small, np.where(flip, 1 - small, small)


def test_a_corpus_large_enough_shows_what_the_sample_cost_and_bought():
    confidence, small, big = scores(5000)
    promise = job_promise(confidence, small, big, 2, 0.03, 0.9, 0.2)
    sample = calibration_sample(5000, promise["sample"], SEED)
    expected = certify_target(confidence[sample], small[sample], big[sample], 5000, QualityTarget(0.03), 2)
    assert 0 < promise["sample"] <= 500 and promise["threshold"] == expected.threshold < 1.0
    assert promise["sample_cost"] == promise["sample"] * 1.2 and promise["speedup"] > 1.0
    rest = np.setdiff1d(np.arange(5000), sample)
    accepted = confidence[rest] >= expected.threshold
    assert promise["rest_disagreement"] == float((accepted & (small[rest] != big[rest])).mean())
    text = "\n".join(promise_lines(promise))
    assert f"the sample: {promise['sample']} of 5000 items through both tiers" in text
    assert "certified with disagreement at most" in text and "sample included" in text


def test_a_corpus_too_small_says_so():
    confidence, small, big = scores(88)
    promise = job_promise(confidence, small, big, 2, 0.03, 0.9, 0.2)
    assert promise["sample"] == 0
    (line,) = promise_lines(promise)
    assert "corpus too small for any gain" in line and "runs every item on tier 2" in line
