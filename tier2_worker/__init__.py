"""Tier 2: the big model's Celery worker, serving queue ``tier2``.

``celery -A tier2_worker worker -Q tier2`` finds ``app`` here; the model path
comes from ``TANGO_MODEL``. GPU workers should use ``-P solo`` or ``-P threads``
(forked processes and CUDA do not mix).
"""
from tier2_worker.app import app, runtime

__all__ = ["app", "runtime"]
