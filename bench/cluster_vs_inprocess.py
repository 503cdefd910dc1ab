"""The cluster (real redis-server, one tier-1 and one tier-2 worker) vs the in-process cascade.

Both sides label the same items with the same models, threshold and chunk size, in one run,
in rounds: in-process, then the cluster with a plain tier-2 worker (one model batch per
forwarded chunk), then the cluster with tier 2's cross-chunk batcher (``--max-wait-ms``); each
round's ratios use that round's in-process rate, and the median over rounds is printed. Workers are started and warm before
the clock starts (in-process models are loaded before too). Cluster time runs from the start of
``tango submit`` to the job's ``finished`` time. Tier 2's mean batch size comes from its
Prometheus endpoint.

    python bench/cluster_vs_inprocess.py --items 4000
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
import torch  # noqa: E402

from common.queue.keys import meta_key  # noqa: E402
from bench.harness import build_corpus, machine, peak_of, scrape_batches, wait_done  # noqa: E402
from common.testing.cluster import free_port, start_redis, start_worker, stop_all, wait_ready  # noqa: E402
from bench.pairs import Pair, choose_pair, pick_threshold  # noqa: E402
from common.queue.inprocess import Tally, label_items  # noqa: E402
from common.cascade import Cascade  # noqa: E402
from common.data.corpus import read_corpus  # noqa: E402
from common.labels import align_labels  # noqa: E402
from common.ml.models import load_tier  # noqa: E402


def warm_cascade(pair: Pair, corpus: Path, items: int, batch_size: int,
                 threshold: float | None) -> tuple[Cascade, float]:
    """Write ``items`` sentences to ``corpus``, load both tiers, pick the threshold and warm the cascade up."""
    sample = build_corpus(corpus, items)
    small = load_tier(str(pair.small), batch_size=batch_size)
    big = load_tier(str(pair.big), batch_size=batch_size)
    threshold = pick_threshold(pair, small, sample[:1000], threshold)
    cascade = Cascade(small, big, threshold, align_labels(small.labels, big.labels))
    cascade.run(sample[:16])
    return cascade, threshold


def in_process(cascade: Cascade, corpus: Path, chunk_size: int) -> tuple[float, list[str]]:
    """What ``tango label`` does, timed without model loading; returns (seconds, labels)."""
    start = time.perf_counter()
    records = list(label_items(cascade, read_corpus(corpus), ("small", "big"), Tally(), chunk_size))
    return time.perf_counter() - start, [r.label for r in records]


def cluster(root: Path, pair: Pair, corpus: Path, args: argparse.Namespace, threshold: float,
            tier2_args: list[str], run: int) -> dict:
    """One job on a fresh Redis with fresh, warm workers; returns its figures."""
    server = start_redis(root)
    redis_proc, url = server.process, server.url
    port = free_port()
    workers = [start_worker(1, pair.small, url, root, "--threads", "1", "--batch-size", str(args.batch_size)),
               start_worker(2, pair.big, url, root, "--threads", "1", "--batch-size", str(args.batch_size),
                            "--metrics-port", str(port), *tier2_args)]
    try:
        wait_ready(workers)
        job = f"bench-{run}"
        start = time.time()
        peak_of(["submit", str(corpus), "--job-id", job, "--threshold", repr(threshold), "--chunk-size",
                 str(args.chunk_size), "--labels", "negative,positive"], url)
        finished = wait_done(redis.Redis.from_url(url), job)
        out = root / f"{job}.jsonl"
        peak_of(["results", job, "-o", str(out)], url)
        batches, items = scrape_batches(port)
        meta = redis.Redis.from_url(url, decode_responses=True).hgetall(meta_key(job))
        return {"seconds": finished - start, "batches": batches, "mean_batch": items / batches if batches else 0,
                "tier2": int(meta["tier2"]),
                "labels": [json.loads(line)["label"] for line in out.read_text().splitlines()]}
    finally:
        stop_all([redis_proc, *workers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of in-process, plain, batched")
    parser.add_argument("--chunk-size", type=int, default=64, help="as `tango submit`'s default")
    parser.add_argument("--batch-size", type=int, default=32, help="model batch size, both tiers, both sides")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch thread counts to run in-process with; per round the fastest is the "
                             "baseline (each worker gets 1 thread)")
    parser.add_argument("--max-wait-ms", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=16, help="tier-2 task threads when batching")
    parser.add_argument("--stand-in", action="store_true")
    args = parser.parse_args()
    variants = {"plain tier 2": [],
                f"tier-2 batcher ({args.max_wait_ms} ms, {args.inflight} in flight)":
                    ["--max-wait-ms", str(args.max_wait_ms), "-c", str(args.inflight)]}
    with tempfile.TemporaryDirectory(prefix="tango-cluster-bench-") as tmp:
        root = Path(tmp)
        pair = choose_pair(root, args.stand_in)
        corpus = root / "corpus.jsonl"
        cascade, threshold = warm_cascade(pair, corpus, args.items, args.batch_size, args.threshold)
        print(f"machine: {machine()}")
        print(f"models: {pair.label}")
        print(f"{args.items} SST-2 train sentences, threshold {threshold:.4f}, chunk size {args.chunk_size}, "
              f"batch size {args.batch_size}; in-process with {args.threads} torch threads, workers 1 thread each")
        ratios: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(1, args.rounds + 1):
            base, reference = best_in_process(cascade, corpus, args, round_)
            for n, (name, extra) in enumerate(variants.items()):
                figures = cluster(root, pair, corpus, args, threshold, extra, 10 * round_ + n)
                ratios[name].append(args.items / figures["seconds"] / base)
                report(f"round {round_}, cluster, {name}", figures, args, base, reference)
        print(f"load average after: {machine().rsplit('load average ', 1)[1]}")
    for name, values in ratios.items():
        print(f"cluster ({name}) / in-process: " + ", ".join(f"{v:.3f}" for v in values)
              + f"; median {statistics.median(values):.3f}")


def best_in_process(cascade: Cascade, corpus: Path, args: argparse.Namespace, round_: int) -> tuple[float, list]:
    """The fastest in-process rate over the thread counts (items/s) and its labels."""
    best, labels = 0.0, []
    for n in args.threads:
        torch.set_num_threads(n)
        seconds, labels = in_process(cascade, corpus, args.chunk_size)
        print(f"round {round_}, in-process, {n} torch thread(s): {seconds:.1f} s ({args.items / seconds:.1f} items/s)")
        best = max(best, args.items / seconds)
    return best, labels


def report(name: str, figures: dict, args: argparse.Namespace, base: float, reference: list) -> None:
    rate = args.items / figures["seconds"]
    agree = sum(a == b for a, b in zip(figures["labels"], reference)) / len(reference)
    print(f"{name}: {figures['seconds']:.1f} s ({rate:.1f} items/s), ratio to in-process {rate / base:.3f}; "
          f"tier 2: {figures['tier2']} items in {figures['batches']:.0f} batches, mean batch "
          f"{figures['mean_batch']:.1f} of {args.batch_size} ({figures['mean_batch'] / args.batch_size:.0%}); "
          f"labels agree with in-process on {agree:.2%}")


if __name__ == "__main__":
    main()
