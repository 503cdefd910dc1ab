"""The pure parts of tango: the cascade decision, models, data, metrics, errors.

Nothing here imports Celery; the Redis-backed store lives in ``common.store``
and is only imported by the workers and the cluster CLI.
"""
