"""tango's library, in rooms drawn by what each may import.

- ``common`` itself (``errors``, ``cascade``, ``labels``, ``metrics``, ``risk``,
  ``wor_bounds``, ``guarantee``, ``target``,
  ``sampling``): the rules every room shares. Standard library, numpy and
  scipy only.
- ``common.data``: reading corpora and GLUE tasks. Never torch, transformers,
  Celery, kombu or Redis.
- ``common.ml``: models, training, calibration, sweeps, evaluation. torch and
  transformers; never Celery, kombu or Redis, nor ``common.queue``.
- ``common.queue``: the cluster (settings, messages, the Redis store, the
  Celery app, submission, a worker's chunk path). Celery, kombu and Redis;
  never torch or transformers, nor ``common.ml``: a worker is handed its model
  loader by its tier's app.
- ``common.testing``: the one local-cluster launcher and the tiny models that
  tests, benchmarks and the demo share. The library never imports it.

``tests/test_layout.py`` enforces these rules.
"""
