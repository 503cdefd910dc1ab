"""``tango worker tier1|tier2``: start a Celery worker for one tier with its model.

It checks the model and Redis first, so a typo fails with one line instead of
a worker that starts and then dies in every pool process, then hands over to
Celery's own worker (``celery -A tier1_worker worker -Q tier1`` is equivalent).
"""
from __future__ import annotations

import os
import socket

import click

from cli.options import CONTEXT, backend_option, redis_option
from common.queue.config import PRECISIONS, ClusterSettings, WorkerSettings, worker_ttl
from common.errors import ConfigError


@click.command("worker", context_settings=CONTEXT)
@click.argument("tier", type=click.Choice(["tier1", "tier2"]))
@click.option("--model", required=True, metavar="PATH", help="The tier's model directory (or hub id).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Inference batch size.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None,
              help="Worker processes, each loading the model once [default: 1]; with --max-wait-ms, task "
                   "threads, i.e. messages held at once [default: the batch size, at least 8].")
@click.option("--pool", "-P", type=click.Choice(["prefork", "solo", "threads"]), default=None,
              help="Celery pool (default: prefork on CPU, solo on a GPU: CUDA does not survive a fork).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker process [default: cores // processes; with several workers "
                   "on one host pass it so that all processes x threads <= cores].")
@click.option("--max-wait-ms", type=click.IntRange(min=0), default=0, show_default=True,
              help="tier2: gather the items of many chunks into batches of --batch-size, waiting at most "
                   "this long for one to fill (0: one batch per chunk). Runs one process with -c threads, "
                   "each holding one message.")
@click.option("--quantize", is_flag=True, help="Dynamic int8 quantization of the Linear layers (CPU).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="Weights' float type; bf16/fp16 on a GPU only.")
@backend_option
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve Prometheus metrics on this port (0: off); needs one model process (-c 1 or "
                   "--max-wait-ms).")
@click.option("--name", "-n", default=None, help="Worker node name (default: TIER-PID@HOST).")
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="Celery log level.")
@redis_option
def worker_command(tier: str, model: str, device: str, batch_size: int, concurrency: int | None, pool: str | None,
                   threads: int | None, max_wait_ms: int, quantize: bool, precision: str, backend: str, metrics_port: int,
                   name: str | None, loglevel: str, redis_url: str | None) -> None:
    """Serve queue TIER with the given model until stopped (first Ctrl-C: finish current tasks)."""
    from common.labels import model_labels
    from common.queue.store import ResultStore

    if max_wait_ms and tier != "tier2":
        raise ConfigError("--max-wait-ms batches tier 2's forwarded items; tier 1's chunks are batches already")
    pool = choose_pool(pool, device, max_wait_ms)
    # batching: one message in hand per batch slot, so a pool refills while the model runs
    # (bench/RESULTS.md, section (2b): with fewer threads than slots, pools went out partly empty)
    concurrency = concurrency or (max(8, batch_size) if max_wait_ms else 1)
    processes = concurrency if pool == "prefork" else 1
    if metrics_port and processes > 1:
        raise ConfigError("--metrics-port serves one process's metrics: use -c 1 (or --max-wait-ms, one process "
                          "with threads), and one port per worker")
    cluster = ClusterSettings.from_env(redis_url)
    settings = WorkerSettings(tier=int(tier[-1]), model=model, device=device, batch_size=batch_size,
                              threads=threads or default_threads(processes), cluster=cluster,
                              max_wait_ms=max_wait_ms, quantize=quantize, precision=precision,
                              metrics_port=metrics_port, backend=backend, worker_ttl=worker_ttl())
    model_labels(model)  # a missing or broken model fails here, before any process starts
    ResultStore.open(cluster)
    os.environ.update(settings.to_env())
    app = _tier_app(tier)
    app.worker_main(["worker", "-Q", tier, "-P", pool, "-c", str(concurrency), "-l", loglevel,
                     "-n", name or f"{tier}-{os.getpid()}@{socket.gethostname()}",
                     "--without-mingle", "--without-gossip"])


def choose_pool(pool: str | None, device: str, max_wait_ms: int) -> str:
    """prefork on CPU; solo on a GPU (CUDA does not survive a fork); threads for tier 2's batcher,
    whose task threads must share one process (and one model) to fill batches together."""
    if max_wait_ms:
        if pool not in (None, "threads"):
            raise ConfigError(f"--max-wait-ms needs the threads pool (one model, many messages), not {pool!r}")
        return "threads"
    return pool or ("prefork" if device == "cpu" or device.lstrip("-").isdigit() and int(device) < 0 else "solo")


def default_threads(processes: int) -> int:
    """torch threads per model process so that the worker's processes share the cores without
    oversubscribing them (torch's default, all cores per process, thrashes when N > 1)."""
    return max(1, available_cores() // max(processes, 1))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _tier_app(tier: str):
    """Import the tier's package only now, after the environment names its model and Redis."""
    if tier == "tier1":
        from tier1_worker import app
    else:
        from tier2_worker import app
    return app
