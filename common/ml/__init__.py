"""The models: loading and batched inference (``models``), training and distillation (``training``),
temperature calibration, threshold sweeps and GLUE evaluation.

Rule: torch and transformers live here; Celery, kombu, Redis and ``common.queue``
never do, so a model can be trained, swept and evaluated without a cluster.
"""
