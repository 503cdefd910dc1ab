"""A tier-1 Celery app whose model misbehaves on marked texts (test only; ``celery -A tests.chaos.poison_app``).

``POISON-KILL`` in a text SIGKILLs the pool process running it, as a segfault or
the out-of-memory killer would; ``POISON-RAISE`` makes the model raise. The
real worker code runs unchanged around it.
"""
from __future__ import annotations

import os
import signal

from common.ml.models import load_for_worker
from tier1_worker.app import app, runtime

__all__ = ["app", "runtime"]


class PoisonedModel:
    """The real tier model, with two ways to fail."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def probabilities(self, texts, pairs=None, progress=None):
        if any("POISON-KILL" in text for text in texts):
            os.kill(os.getpid(), signal.SIGKILL)
        if any("POISON-RAISE" in text for text in texts):
            raise ValueError("poisoned text")
        return self._model.probabilities(texts, pairs)


runtime.loader = lambda settings: PoisonedModel(load_for_worker(settings))
