"""The demo's data (the shipped sample reviews, the fixed splits the cache key relies on) and what it
prints about its guarantee."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo.pipeline import (SAMPLE_FILE, DemoResult, DemoSettings, cache_key, format_result, load_demo_data,
                               read_sample_reviews)


def test_sample_reviews_are_shipped_balanced_and_unique():
    data = read_sample_reviews()
    assert len(data) >= 250 and data.labels == ["negative", "positive"]
    assert abs(int(data.label_ids.sum()) * 2 - len(data)) <= 10
    assert len(set(data.texts)) == len(data.texts)
    assert (SAMPLE_FILE.parent / "README.md").read_text().count("written by the tango authors") == 1


def test_sample_splits_are_disjoint_and_stable(tmp_path):
    settings = DemoSettings(cache_dir=tmp_path)
    first, again = load_demo_data(settings), load_demo_data(settings)
    parts = [set(first.train.texts), set(first.held_out.texts), set(first.corpus.texts)]
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert first.sample and cache_key(settings, first) == cache_key(settings, again)
    quick = DemoSettings(cache_dir=tmp_path, quick=True)
    assert cache_key(quick, load_demo_data(quick)) != cache_key(settings, first)


def test_sst2_mode_uses_train_for_training_and_dev_as_corpus(glue_dir: Path, tmp_path):
    data = load_demo_data(DemoSettings(cache_dir=tmp_path, data_dir=str(glue_dir), quick=True, max_corpus_items=50))
    assert not data.sample and len(data.train) == 400 and len(data.corpus) == 50
    assert not set(data.train.texts) & set(data.held_out.texts)


@pytest.mark.parametrize("cascade, says", [(78.5, "0.20 points (within it)"),
                                           (78.1, "0.60 points (outside it, as 10% of runs may be)")])
def test_the_measured_drop_is_printed_beside_the_bound_it_was_certified_with(cascade, says):
    choice = {"rule": "certified", "threshold": 0.963, "bound": 0.48, "estimate": 0.0, "items": 474,
              "confidence": 0.9, "max_drop": 1.0}
    result = DemoResult("reviews", 712, 0.963, 214, 498, 2.0, 2.2, 1.1, 1.11, cascade, 78.7, 71.6,
                        {"small": "S", "big": "B"}, choice=choice)
    line = next(line for line in format_result(result).splitlines() if "guarantee:" in line)
    assert "at most 0.48 points" in line and "90% confidence, from 474 held-out items" in line
    assert line.endswith(f"measured on the corpus: {says}")
