"""The bench-only celery-batches tier 2: one model pass per flush, and its task really is the Batches one."""
from __future__ import annotations

import numpy as np
import pytest

from bench.celery_batches_tier2 import PooledRows
from common.queue.messages import TASK_TIER2, Chunk, WorkItem

LABELS = ("negative", "positive")


class CountingModel:
    """Answers each text with [its length, 0], so rows can be traced; records each call's size."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def probabilities(self, texts, pairs=None) -> np.ndarray:
        self.calls.append(len(texts))
        if self.fail and len(texts) > 1:
            raise RuntimeError("pooled pass fails")
        return np.array([[len(t), 0.0] for t in texts])


def _payload(chunk: int, texts: list[str], pairs: list[str] | None = None) -> dict:
    items = tuple(WorkItem(chunk * 100 + n, f"{chunk}-{n}", text, None if pairs is None else pairs[n])
                  for n, text in enumerate(texts))
    return Chunk("job", chunk, 2, 0.5, LABELS, items).encode()


def test_one_model_pass_per_input_kind_and_rows_go_to_their_chunk() -> None:
    model = CountingModel()
    rows = PooledRows(model)
    rows.load([_payload(0, ["a", "bb"]), _payload(1, ["ccc"]), _payload(2, ["d"], ["p"]), {"bad": 1}])
    assert model.calls == [3, 1]  # single texts pooled, pairs apart, the malformed message skipped
    assert rows.probabilities(["ccc"])[:, 0].tolist() == [3]
    assert rows.probabilities(["a", "bb"])[:, 0].tolist() == [1, 2]
    assert model.calls == [3, 1]
    rows.probabilities(["a", "bb"])  # handed out once: a second ask goes to the model
    assert model.calls == [3, 1, 2]


def test_a_failed_pooled_pass_leaves_each_chunk_to_the_model() -> None:
    model = CountingModel(fail=True)
    rows = PooledRows(model)
    rows.load([_payload(0, ["a", "bb"])])
    with pytest.raises(RuntimeError):
        rows.probabilities(["a", "bb"])  # item_probabilities then retries item by item
    assert rows.probabilities(["a"])[:, 0].tolist() == [1]


def test_the_app_runs_the_batches_task_not_tier2s_shared_one(monkeypatch) -> None:
    pytest.importorskip("celery_batches")
    from celery_batches import Batches

    from bench.celery_batches_tier2 import make_app

    monkeypatch.setenv("TANGO_REDIS_URL", "redis://127.0.0.1:1/0")
    task = make_app(flush_every=8, flush_interval=0.05).tasks[TASK_TIER2]
    assert isinstance(task, Batches) and (task.flush_every, task.flush_interval) == (8, 0.05)
    from tier1_worker import app as tier1_app

    assert TASK_TIER2 not in tier1_app.tasks  # not shared: it must not join other apps in this process
