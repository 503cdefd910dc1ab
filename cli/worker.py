"""``tango worker tier1|tier2``: start a Celery worker for one tier with its model.

It checks the model and Redis first, so a typo fails with one line instead of
a worker that starts and then dies in every pool process, then hands over to
Celery's own worker (``celery -A tier1_worker worker -Q tier1`` is equivalent).
"""
from __future__ import annotations

import os
import socket

import click

from cli.options import CONTEXT, redis_option
from common.config import ClusterSettings


@click.command("worker", context_settings=CONTEXT)
@click.argument("tier", type=click.Choice(["tier1", "tier2"]))
@click.option("--model", required=True, metavar="PATH", help="The tier's model directory (or hub id).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Inference batch size.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (or threads); each loads the model once.")
@click.option("--pool", "-P", type=click.Choice(["prefork", "solo", "threads"]), default=None,
              help="Celery pool (default: prefork on CPU, solo on a GPU: CUDA does not survive a fork).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker process (keep processes x threads <= cores).")
@click.option("--name", "-n", default=None, help="Worker node name (default: TIER-PID@HOST).")
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="Celery log level.")
@redis_option
def worker_command(tier: str, model: str, device: str, batch_size: int, concurrency: int, pool: str | None,
                   threads: int | None, name: str | None, loglevel: str, redis_url: str | None) -> None:
    """Serve queue TIER with the given model until stopped (first Ctrl-C: finish current tasks)."""
    from common.labels import model_labels
    from common.store import ResultStore
    from common.worker import WorkerSettings

    cluster = ClusterSettings.from_env(redis_url)
    settings = WorkerSettings(tier=int(tier[-1]), model=model, device=device, batch_size=batch_size,
                              threads=threads, cluster=cluster)
    model_labels(model)  # a missing or broken model fails here, before any process starts
    ResultStore.open(cluster)
    os.environ.update(settings.to_env())
    pool = pool or ("prefork" if device == "cpu" or device.lstrip("-").isdigit() and int(device) < 0 else "solo")
    app = _tier_app(tier)
    app.worker_main(["worker", "-Q", tier, "-P", pool, "-c", str(concurrency), "-l", loglevel,
                     "-n", name or f"{tier}-{os.getpid()}@{socket.gethostname()}",
                     "--without-mingle", "--without-gossip"])


def _tier_app(tier: str):
    """Import the tier's package only now, after the environment names its model and Redis."""
    if tier == "tier1":
        from tier1_worker import app
    else:
        from tier2_worker import app
    return app
