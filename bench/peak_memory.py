"""Peak memory of each worker and of the CLI during a 100,000-item job, against a 10,000-item one.

The CLI must not hold the corpus or the results: ``submit`` streams the file twice (validate,
then send chunk by chunk) and ``results`` streams from Redis block by block, so their peaks
should be flat in the corpus size (target: 100k within 1.5x of 10k). Both jobs run in this one
invocation through the queue-ceiling set-up (near-free model, fresh Redis and workers each);
peaks are the kernel's (RUSAGE_CHILDREN for CLI commands, VmHWM for workers and Redis).

    python bench/peak_memory.py --sizes 10000 100000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import machine  # noqa: E402
from bench.queue_ceiling import make_parser, near_free_model, run_job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    settings = make_parser().parse_args([])  # the queue ceiling's job, with its defaults
    print(f"machine: {machine()}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="tango-memory-") as tmp:
        root = Path(tmp)
        model, threshold = near_free_model(root, 0.2)
        for size in args.sizes:
            figures = run_job(root, size, settings, model, threshold)
            rows[size] = {"submit": figures["submit_mb"], "wait": figures["wait_mb"],
                          "results": figures["results_mb"], **figures["worker_mb"], "redis": figures["redis_mb"]}
    first, last = args.sizes[0], args.sizes[-1]
    print(f"peak RSS in MiB ({first} vs {last} items; tier1-*/tier2-* include their pool processes)")
    for name in rows[first]:
        small, big = rows[first][name], rows[last].get(name, rows[last].get(_renamed(name, rows[last]), 0))
        print(f"{name:>10}: {small:7.1f} -> {big:7.1f}  ({big / small:.2f}x)")


def _renamed(name: str, row: dict) -> str:
    """Worker names carry a counter (tier1-0, tier1-2, ...): match them by tier."""
    return next((key for key in row if key.split("-")[0] == name.split("-")[0]), name)


if __name__ == "__main__":
    main()
