"""The cluster: settings (``config``), Redis keys, the JSON wire format (``messages``), the result
store, the Celery app, submission, a worker's path for one chunk (``runtime`` -> ``chunks`` ->
``decisions``), and a job's audit report (``audit``).

Rule: Celery, kombu and Redis live here; torch, transformers and ``common.ml`` never
do, so the cluster's client commands start fast and a worker's main process
imports no model code until its tier's app hands it a loader.
"""
