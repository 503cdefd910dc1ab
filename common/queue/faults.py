"""How a worker contains a fault so that it costs the fewest items and never the whole job.

Three faults have three answers. A model that raises on some input fails
only the items that make it raise: the batch is retried item by item. A chunk
that kills its process (a segfault, the out-of-memory killer) is delivered
again by Celery (``task_reject_on_worker_lost``) and would loop forever, so
every start is counted in Redis: a chunk of several items that died once is
split in two, each half its own task, until the item that kills the process
is alone, and that item, started more than ``max_attempts`` times, is recorded
as failed instead of run. Starts that ended because Redis was away are taken
back, so an outage never uses up the cap. A pool
process that cannot load its model must not take tasks, and Celery would
replace it forever, so it stops the whole worker with a non-zero exit.
"""
from __future__ import annotations

import logging
import os
import signal
from typing import Protocol, Sequence

import numpy as np

from common.errors import first_line

log = logging.getLogger(__name__)


class Scorer(Protocol):
    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray: ...


def item_probabilities(model: Scorer, texts: list[str],
                       pairs: list[str] | None) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """``(probabilities, ok positions, {position: reason})`` for a chunk's texts.

    The whole batch runs first; only when it raises is each text run alone,
    so one bad item costs its neighbours a slower path, never their answers.
    """
    try:
        return model.probabilities(texts, pairs), list(range(len(texts))), {}
    except Exception as exc:  # any model error: find the items that cause it
        log.warning("a batch of %d items failed (%s); retrying them one by one", len(texts), first_line(exc))
    rows: list[np.ndarray] = []
    ok: list[int] = []
    errors: dict[int, str] = {}
    for position, text in enumerate(texts):
        try:
            rows.append(model.probabilities([text], None if pairs is None else [pairs[position]])[0])
            ok.append(position)
        except Exception as exc:  # recorded against this one item, with its reason
            errors[position] = f"{type(exc).__name__}: {first_line(exc)}"
    return (np.stack(rows) if rows else np.empty((0, 0))), ok, errors


SPLIT_AFTER = 2  # a chunk of several items whose process died once is split on its next start


def should_split(attempt: int, items: int) -> bool:
    """Whether a chunk starting for the ``attempt``-th time is split instead of run."""
    return items > 1 and attempt >= SPLIT_AFTER


def attempts_exhausted(tier: int, attempt: int, max_attempts: int) -> str | None:
    """The failure reason for an item on its ``attempt``-th start, or None while it may still run."""
    if attempt <= max_attempts:
        return None
    return (f"tier {tier}: gave up after {attempt - 1} starts of this item without an answer "
            "(its worker process died each time: a crash or the out-of-memory killer?)")


def shut_down_worker(reason: str, exit_code: int, in_pool_child: bool) -> None:
    """Log one line and stop the whole Celery worker with a non-zero status.

    A pool child signals its parent (SIGQUIT: Celery's cold shutdown, exit 1)
    and exits itself; otherwise the worker's own process is signalled.
    """
    log.critical("%s", reason)
    target = os.getppid() if in_pool_child else os.getpid()
    os.kill(target, signal.SIGQUIT)
    if in_pool_child:
        os._exit(exit_code)
