"""Dynamic batching for tier 2: one model batch from the uncertain items of many chunks.

Tier 1 forwards only the uncertain fraction of each chunk (a fifth of 64 items
is about 13), so a tier-2 worker that ran each message alone would run the big
model on tiny batches. Here each task thread hands its chunk's texts to one
``Batcher`` and waits; a single inference thread takes up to ``batch_size``
pending items from as many chunks as needed, or what is there once the oldest
has waited ``max_wait`` seconds, runs the model once and gives each chunk back
its own rows. The task then writes its results and returns, and only then does
Celery acknowledge its message: nothing is acknowledged before it is stored.

``max_wait`` runs from an item's arrival or from when the model last became free,
whichever is later: items that arrived while the model was busy are overdue the moment
it is free, and running them at once, before the chunks whose messages just finished
are replaced by new ones, would make small pools and a partial model batch of most of
them. A pool cut by the timer is also rounded down to
whole model batches (``unit``) when it holds at least one; the rest waits again.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# texts, pairs (or None) -> probabilities, one row per text
InferFn = Callable[[list[str], "list[str] | None"], np.ndarray]


@dataclass
class _Request:
    """One chunk's items waiting for their rows; ``taken`` of them are already in a batch."""

    texts: Sequence[str]
    pairs: Sequence[str] | None
    future: Future
    arrived: float
    rows: list = field(default_factory=list)  # (offset, probabilities) parts, filled by batches
    taken: int = 0
    filled: int = 0


@dataclass
class BatchStats:
    """What the batcher did, for tests and logs: how full its batches were."""

    batches: int = 0
    items: int = 0
    full: int = 0  # batches that reached batch_size


class BatcherClosed(RuntimeError):
    """Raised when a chunk is handed to a batcher that is shutting down."""


class Batcher:
    """Gathers items from concurrent callers into model batches of up to ``batch_size``."""

    def __init__(self, infer: InferFn, *, batch_size: int, max_wait: float, unit: int | None = None,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        unit = unit or batch_size
        if batch_size < 1 or max_wait < 0 or not 1 <= unit <= batch_size:
            raise ValueError(f"batch_size must be >= 1, max_wait >= 0 and unit in 1..batch_size, "
                             f"got {batch_size}, {max_wait}, {unit}")
        self.infer = infer
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.unit = unit  # the model's own batch: a timed cut keeps whole ones
        self._free = 0.0  # when the inference thread last finished a batch (only it reads or writes this)
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._closing = False
        self._draining = False  # run what is queued at once, without waiting for batches to fill
        self._thread = threading.Thread(target=self._loop, name="tango-batcher", daemon=True)
        self._thread.start()

    def submit(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Future:
        """Queue one chunk's items; the future resolves to their probabilities, in order."""
        future: Future = Future()
        if not texts:
            future.set_result(np.empty((0, 0), dtype=np.float64))
            return future
        with self._cond:
            if self._closing:
                raise BatcherClosed("the tier-2 batcher is shutting down")
            self._pending.append(_Request(texts, pairs, future, time.monotonic()))
            self._cond.notify_all()
        return future

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """Blocking form, a drop-in for ``TierModel.probabilities`` (what a task thread calls)."""
        return self.submit(texts, pairs).result()

    def drain(self) -> None:
        """From now on run items as soon as they are queued: the worker is shutting down and its
        task threads must finish (and their messages be acknowledged) without waiting out a timer."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Run every item already queued (without waiting for more), then stop the thread."""
        with self._cond:
            self._closing = self._draining = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- the inference thread -------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
            self._run(batch)
            self._free = time.monotonic()

    def _next_batch(self) -> list[tuple[_Request, int, int]] | None:
        """Wait (holding the condition) until a batch is due; None once closed and drained."""
        while True:
            waiting = self._waiting()
            if waiting >= self.batch_size or (waiting and self._draining):
                return self._take()
            if not waiting:
                if self._closing:
                    return None
                self._cond.wait()
                continue
            due = max(self._pending[0].arrived, self._free) + self.max_wait - time.monotonic()
            if due <= 0:
                if waiting > self.unit and waiting % self.unit:
                    return self._take(waiting - waiting % self.unit)
                return self._take()
            self._cond.wait(due)

    def _waiting(self) -> int:
        kind = self._pending[0].pairs is not None if self._pending else None
        return sum(len(r.texts) - r.taken for r in self._pending if (r.pairs is not None) == kind)

    def _take(self, limit: int | None = None) -> list[tuple[_Request, int, int]]:
        """Up to ``limit`` (``batch_size``) items, oldest first; pairs and single texts never share a batch."""
        kind = self._pending[0].pairs is not None
        parts, room = [], limit or self.batch_size
        for request in self._pending:
            if room == 0:
                break
            if (request.pairs is not None) != kind:
                continue
            count = min(room, len(request.texts) - request.taken)
            parts.append((request, request.taken, count))
            request.taken += count
            room -= count
        self._pending = [r for r in self._pending if r.taken < len(r.texts)]
        return parts

    def _run(self, parts: list[tuple[_Request, int, int]]) -> None:
        texts = [t for request, start, count in parts for t in request.texts[start:start + count]]
        pairs = None
        if parts[0][0].pairs is not None:
            pairs = [p for request, start, count in parts for p in request.pairs[start:start + count]]
        started = time.perf_counter()
        try:
            probs = self.infer(texts, pairs)
        except Exception as exc:  # noqa: BLE001 - rerun chunk by chunk: a bad item fails only its own chunk
            if len(parts) == 1:
                if not parts[0][0].future.done():
                    parts[0][0].future.set_exception(exc)
            else:
                for part in parts:
                    self._run([part])
            return
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.items += len(texts)
        self.stats.full += len(texts) == self.batch_size
        if self._on_batch is not None:
            self._on_batch(len(texts), seconds)
        self._deliver(parts, probs)

    @staticmethod
    def _deliver(parts: list[tuple[_Request, int, int]], probs: np.ndarray) -> None:
        """Hand each chunk its rows; a chunk split over batches resolves when its last part is in."""
        offset = 0
        for request, start, count in parts:
            request.rows.append((start, probs[offset:offset + count]))
            offset += count
            request.filled += count
            if request.filled == len(request.texts) and not request.future.done():
                request.rows.sort(key=lambda part: part[0])
                request.future.set_result(np.concatenate([rows for _, rows in request.rows]))

