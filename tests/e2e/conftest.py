"""Fixtures of the end-to-end tests."""
from __future__ import annotations

import pytest

N_SENTENCES = 2000


@pytest.fixture(scope="module")
def sentences(glue_dir) -> list[tuple[str, str]]:
    rows = (glue_dir / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(row.split("\t")) for row in rows[:N_SENTENCES]]
