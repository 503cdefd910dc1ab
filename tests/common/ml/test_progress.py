"""Long work reports its progress in a log when no terminal is there to draw a bar."""
from __future__ import annotations

import logging

from common.ml.progress import Progress, track


def test_off_a_terminal_progress_is_logged_with_counts_and_the_postfix(caplog):
    caplog.set_level(logging.INFO, logger="tango.progress")
    progress = Progress(4, "training", every=0.0, terminal=False)
    for _ in range(4):
        progress.update(1, loss="0.5000")
    lines = [r.getMessage() for r in caplog.records if r.name == "tango.progress"]
    assert len(lines) == 4
    assert lines[1].startswith("training: 2/4 steps (50%)") and "left" in lines[1] and "loss 0.5000" in lines[1]
    assert lines[-1].startswith("training: 4/4 steps (100%)") and "left" not in lines[-1]


def test_the_log_is_paced(caplog):
    caplog.set_level(logging.INFO, logger="tango.progress")
    progress = Progress(1000, "teacher logits", unit="batch", every=3600.0, terminal=False)
    for _ in range(1000):
        progress.update()
    assert [r.getMessage() for r in caplog.records] == [progress.line()]  # only the final count


def test_track_yields_every_item_and_none_means_silent(caplog):
    caplog.set_level(logging.INFO, logger="tango.progress")
    assert list(track([1, 2, 3], None)) == [1, 2, 3]
    assert not caplog.records
    assert list(track([1, 2, 3], "dev")) == [1, 2, 3]
    assert caplog.records[-1].getMessage().startswith("dev: 3/3 batches")
