"""The queue's own ceiling: a near-free model through submit, tier 1, tier 2 and the result store.

A 1-layer BERT with hidden size 8 costs next to nothing, so what this measures is
the pipeline itself: reading and validating the corpus, encoding chunks, the broker,
decoding, the routing, the Lua result writes and the forward to tier 2 (the threshold
is set so that about 20% of items escalate). Prints ``N items/s`` end to end (from the
start of ``tango submit`` to the job's ``finished`` time), plus the tier-2 mean batch
size from its Prometheus endpoint and the peak memory of every process.

    python bench/queue_ceiling.py --items 100000 --chunk-size 1000 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.queue.config import DEFAULT_WINDOW  # noqa: E402
from common.queue.keys import meta_key  # noqa: E402
from bench.harness import (LAST_CPU, build_corpus, cpu_seconds, machine, peak_of, peak_rss_mb, scrape_batches,  # noqa: E402
                           wait_done)
from common.testing.cluster import free_port, start_redis, start_worker, stop_all, wait_ready  # noqa: E402


def build_model(directory: Path, sample: list[str]) -> Path:
    from common.testing.tiny import build_tiny_model

    return build_tiny_model(directory, ["negative", "positive"], layers=1, hidden=8, corpus=sample, seed=3)


def escalating_threshold(model_dir: Path, sample: list[str], fraction: float) -> float:
    """The confidence below which ``fraction`` of the sample falls: about that share goes to tier 2."""
    import numpy as np

    from common.ml.models import load_tier

    probs = load_tier(str(model_dir), batch_size=256).probabilities(sample)
    return float(np.quantile(probs.max(axis=1), fraction))


def near_free_model(root: Path, escalate: float) -> tuple[Path, float]:
    """The near-free model, built under ``root``, and the threshold that sends about ``escalate`` of
    SST-2 train sentences on to tier 2."""
    sample = build_corpus(root / "sample.jsonl", 10)
    model = build_model(root / "model", sample)
    return model, escalating_threshold(model, sample, escalate)


def floor_rate(corpus: Path, model_dir: Path, batch: int, block: int = 1000) -> float:
    """Items/s of the least work an item needs, in one process on one torch thread: parse its line,
    tokenize it once, run the near-free model, encode its result as a JSON line. No queue, no Redis.
    Items go to the model ``block`` at a time, sorted by length within the block as a worker sorts
    a chunk: in input order a batch pads to its longest sentence and costs a third more."""
    import json

    import numpy as np
    import torch

    from common.cascade import answers
    from common.ml.models import load_tier

    torch.set_num_threads(1)
    model = load_tier(str(model_dir), batch_size=batch)
    outputs = np.arange(model.num_labels)
    start = time.perf_counter()
    items = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    lines = []
    for s in range(0, len(items), block):
        part = items[s:s + block]
        probs = model.probabilities([item["text"] for item in part])
        ids, scores = answers(probs, outputs)
        lines += [json.dumps({"id": item["id"], "label": model.labels[i], "score": float(p), "tier": 1})
                  for item, i, p in zip(part, ids, scores)]
    return len(lines) / (time.perf_counter() - start)


def run_job(root: Path, items: int, args: argparse.Namespace, model: Path, threshold: float) -> dict:
    """One job through a fresh Redis and fresh workers; returns its figures. Every process it
    started is stopped on the way out, also when a worker fails to start."""
    corpus = root / f"corpus-{items}.jsonl"
    build_corpus(corpus, items)
    server = start_redis(root)
    redis_proc, url = server.process, server.url
    processes = [redis_proc]
    try:
        port = free_port()
        tier2_args = ["--batch-size", str(args.tier2_batch), "--threads", "1", "--metrics-port", str(port)]
        if args.max_wait_ms:
            tier2_args += ["--max-wait-ms", str(args.max_wait_ms)]
        tier1_args = ["--batch-size", str(args.tier1_batch), "--threads", "1"]
        if args.tier1_solo:  # one solo worker per process: no prefork parent relaying each chunk to a child
            for _ in range(args.tier1_processes):
                processes.append(start_worker(1, model, url, root, *tier1_args, "-P", "solo"))
        else:
            processes.append(start_worker(1, model, url, root, *tier1_args, "-c", str(args.tier1_processes)))
        processes.append(start_worker(2, model, url, root, *tier2_args))
        workers = processes[1:]
        wait_ready(workers)
        idle = {w.name: cpu_seconds(w) for w in processes}
        job = f"ceiling-{items}"
        start = time.time()
        submit_mb, _ = peak_of(["submit", str(corpus), "--job-id", job, "--threshold", repr(threshold),
                                "--chunk-size", str(args.chunk_size), "--labels", "negative,positive",
                                "--audit", repr(args.audit), "--window", str(args.window)], url)
        submitted = time.time()
        submit_cpu = LAST_CPU[0]
        import redis

        finished = wait_done(url, job)
        commands = redis.Redis.from_url(url).info("commandstats")
        wait_mb, _ = peak_of(["wait", job], url)
        results_mb, _ = peak_of(["results", job, "-o", str(root / f"results-{items}.jsonl")], url)
        status = redis.Redis.from_url(url, decode_responses=True).hgetall(meta_key(job))
        batches, batched = scrape_batches(port)
        return {"items": items, "seconds": finished - start, "submit_seconds": submitted - start,
                "rate": items / (finished - start), "tier2": int(status["tier2"]), "done": int(status["done"]),
                "tier2_batches": batches, "tier2_mean_batch": batched / batches if batches else 0.0,
                "submit_mb": submit_mb, "wait_mb": wait_mb, "results_mb": results_mb,
                "worker_mb": {w.name: peak_rss_mb(w) for w in workers},
                "cpu": {"submit (whole command)": submit_cpu,
                        **{w.name: cpu_seconds(w) - idle[w.name] for w in processes}},
                "redis_mb": peak_rss_mb(redis_proc), "chunks": -(-items // args.chunk_size),
                "redis_commands": {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in commands.items()}}
    finally:
        stop_all(processes)


def redis_line(figures: dict, chunk_size: int) -> str:
    """What one Redis serves: commands per tier-1 chunk (both tiers' traffic, the job's own commands
    included), and the items per second one Redis core would carry at the CPU this job cost it."""
    calls = figures["redis_commands"]
    per_chunk = sum(calls.values()) / figures["chunks"]
    top = ", ".join(f"{name} {count / figures['chunks']:.1f}" for name, count in
                    sorted(calls.items(), key=lambda kv: -kv[1])[:6])
    redis_cpu = next(v for k, v in figures["cpu"].items() if k.startswith("redis"))
    return (f"Redis: {per_chunk:.1f} commands per {chunk_size}-item chunk ({top}); redis-server used "
            f"{redis_cpu:.2f} CPU s, so one Redis core carries about {figures['items'] / redis_cpu:,.0f} "
            f"items/s of this job before Redis, not the models, is the limit")


def make_parser() -> argparse.ArgumentParser:
    """The job settings; bench/peak_memory.py runs the same job with their defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--tier1-batch", type=int, default=256)
    parser.add_argument("--tier2-batch", type=int, default=256)
    parser.add_argument("--tier1-processes", type=int, default=1)
    parser.add_argument("--tier1-solo", action="store_true",
                        help="run --tier1-processes separate solo-pool workers instead of one prefork worker")
    parser.add_argument("--max-wait-ms", type=int, default=0, help="tier-2 batcher (0: off)")
    parser.add_argument("--escalate", type=float, default=0.2, help="share of items tier 1 should send on")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="submit's --window: the most unanswered items in flight (0: no limit)")
    parser.add_argument("--audit", type=float, default=0.02,
                        help="share of tier 1's answers checked by tier 2 (submit's --audit; its default)")
    return parser


def main() -> None:
    parser = make_parser()
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the job and the floor this often, interleaved, and compare the fastest of each "
                             "(the CPUs are shared: the fastest run is the one least disturbed)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    runs: list[tuple[dict, float]] = []
    with tempfile.TemporaryDirectory(prefix="tango-ceiling-") as tmp:
        root = Path(tmp)
        model, threshold = near_free_model(root, args.escalate)
        for _ in range(args.repeats):
            figures = run_job(root, args.items, args, model, threshold)
            floor = floor_rate(root / f"corpus-{args.items}.jsonl", model, args.tier1_batch, args.chunk_size)
            runs.append((figures, floor))
    figures = max((f for f, _ in runs), key=lambda f: f["rate"])
    floor = max(rate for _, rate in runs)
    print(f"settings: chunk size {args.chunk_size}, window {args.window}, tier-1 batch {args.tier1_batch} x {args.tier1_processes} "
          f"process(es), tier-2 batch {args.tier2_batch}, max wait {args.max_wait_ms} ms, audit {args.audit:g}, "
          "1 torch thread each")
    if len(runs) > 1:
        print("runs: job " + ", ".join(f"{f['rate']:.0f}" for f, _ in runs) + " items/s; floor "
              + ", ".join(f"{rate:.0f}" for _, rate in runs) + " items/s; the fastest of each below")
    print(f"{figures['items']} items ({figures['done']} done, {figures['tier2'] / figures['items']:.1%} by tier 2) "
          f"in {figures['seconds']:.2f} s (submit returned after {figures['submit_seconds']:.2f} s); "
          f"tier-2 mean batch {figures['tier2_mean_batch']:.1f} over {figures['tier2_batches']:.0f} batches")
    print(f"peak memory MiB: submit {figures['submit_mb']:.0f}, wait {figures['wait_mb']:.0f}, "
          f"results {figures['results_mb']:.0f}, " + ", ".join(f"{k} {v:.0f}" for k, v in figures["worker_mb"].items())
          + f", redis {figures['redis_mb']:.0f}")
    print("CPU seconds used by the job: " +
          ", ".join(f"{k} {v:.1f}" for k, v in figures["cpu"].items()))
    print(f"{figures['rate']:.0f} items/s")
    print(redis_line(figures, args.chunk_size))
    cores = len(os.sched_getaffinity(0))
    print(f"floor (parse, tokenize once, near-free model, encode; one process, one thread): {floor:.0f} items/s, "
          f"{cores * floor:.0f} on {cores} cores; the queue ceiling is {figures['rate'] / (cores * floor):.0%} of "
          f"the cores' floor ({figures['rate'] / floor:.0%} of one core's)")
    if len(runs) > 1:
        shares = [f["rate"] / (cores * rate) for f, rate in runs]
        print("each job against the floor run after it: " + ", ".join(f"{share:.0%}" for share in shares)
              + f"; median {statistics.median(shares):.0%}")


if __name__ == "__main__":
    main()
