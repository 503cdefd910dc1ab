"""The same job at several chunk sizes (items per tier-1 task), in-process and in the cluster, side by side.

A worker sorts its chunk by length before it cuts model batches, so a larger chunk pads less, and it
pays each task's fixed costs (message, decode, result write) over more items. This measures what that
is worth with real models: each round runs ``tango label``'s path and a cluster job (real
redis-server, one warm tier-1 and one tier-2 worker, one torch thread each) at every size, and prints
items/s against the smallest size of the same round. ``auto`` is what ``tango submit`` picks for the
corpus. Labels are checked against the first size's.

    python bench/chunk_size.py --items 3000 --chunk-sizes 64 auto 1024 --small S --big B
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_vs_inprocess import cluster, in_process, warm_cascade  # noqa: E402
from bench.harness import machine  # noqa: E402
from bench.pairs import choose_pair, given_pair  # noqa: E402
from common.queue.config import resolve_chunk_size  # noqa: E402


def sizes(names: list[str], items: int) -> list[int]:
    """The chunk sizes asked for, ``auto`` resolved for ``items``, each once (auto may equal a number given)."""
    return list(dict.fromkeys(resolve_chunk_size(None if name == "auto" else int(name), items) for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--chunk-sizes", nargs="+", default=["64", "auto", "1024"], help="numbers or auto")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="model batch size, both tiers, both sides")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--small", help="tier-1 model directory (default: the reproduction pair, else stand-ins)")
    parser.add_argument("--big", help="tier-2 model directory")
    parser.add_argument("--stand-in", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as each worker runs
    with tempfile.TemporaryDirectory(prefix="tango-chunk-bench-") as tmp:
        root = Path(tmp)
        pair = given_pair(args.small, args.big) if args.small and args.big else choose_pair(root, args.stand_in)
        corpus = root / "corpus.jsonl"
        cascade, threshold = warm_cascade(pair, corpus, args.items, args.batch_size, args.threshold)
        chunks = sizes(args.chunk_sizes, args.items)
        print(f"machine: {machine()}")
        print(f"models: {pair.label}")
        print(f"{args.items} SST-2 train sentences, threshold {threshold:.4f}, batch size {args.batch_size}, "
              f"chunk sizes {args.chunk_sizes} = {chunks}; one torch thread a process")
        rates: dict[tuple[str, int], list[float]] = {}
        for round_ in range(1, args.rounds + 1):
            reference = None
            for n, size in enumerate(chunks):
                seconds, labels = in_process(cascade, corpus, size)
                reference = reference or labels
                job = cluster(root, pair, corpus, argparse.Namespace(batch_size=args.batch_size, chunk_size=size),
                              threshold, [], 10 * round_ + n)
                agree = sum(a == b for a, b in zip(job["labels"], reference)) / len(reference)
                rates.setdefault(("in-process", size), []).append(args.items / seconds)
                rates.setdefault(("cluster", size), []).append(args.items / job["seconds"])
                print(f"round {round_}, chunk {size}: in-process {args.items / seconds:.1f} items/s, cluster "
                      f"{args.items / job['seconds']:.1f} items/s ({job['tier2']} to tier 2); labels agree with "
                      f"chunk {chunks[0]} in-process on {agree:.2%}", flush=True)
        print(f"load average after: {machine().rsplit('load average ', 1)[1]}")
    first = chunks[0]
    for side in ("in-process", "cluster"):
        for size in chunks:
            ratios = [a / b for a, b in zip(rates[(side, size)], rates[(side, first)])]
            print(f"{side}, chunk {size}: median {statistics.median(rates[(side, size)]):.1f} items/s, "
                  f"against chunk {first} " + ", ".join(f"{r:.2f}x" for r in ratios))


if __name__ == "__main__":
    main()
