"""Tier 1: the small model's Celery worker, serving queue ``tier1``.

``celery -A tier1_worker worker -Q tier1`` finds ``app`` here; the model path
comes from ``TANGO_MODEL`` (``tango worker tier1 --model PATH`` sets it).
"""
from tier1_worker.app import app, runtime

__all__ = ["app", "runtime"]
