"""Readers: corpora for the cluster (``corpus``), GLUE tasks for evaluation (``glue``), and the file
formats both read (``records``).

Rule: no model or queue library (torch, transformers, Celery, kombu, Redis), so
the cluster's client and the evaluation code read input the same way.
"""
