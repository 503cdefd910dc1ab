"""Tier 2 against a real backlog: mean batch size, and our batcher vs celery-batches side by side.

The targets table asks for the mean tier-2 batch *while a backlog exists*; the cluster benchmark
only gives whole-job means, start-up and tail included. Here tier 1 forwards everything first:
redis-server and a tier-1 worker run, the job is submitted, and only when every forwarded item
is on the ``tier2`` queue (tier-1 decided + queued items = total) is tier 1 stopped and the
tier-2 variant started. Each variant gets its own fresh Redis and the same job, so the same
backlog (tier 1 is deterministic; the script checks the queued item indices are equal).

Clock: from the tier-2 worker reporting ready to the job's ``finished`` time; items/s counts
tier-2 items. Batch sizes come from the worker's Prometheus endpoint, polled every
``--poll-ms`` while it runs: a poll that saw one new batch gives its exact size, in order, so
the last batch (the tail) can be told apart. Every run checks that every item has one stored
result and that the model ran each queued item exactly once.

    python bench/tier2_backlog.py --items 8000 --stand-in --rounds 2
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from common.queue.config import PRECISIONS  # noqa: E402
from common.queue.keys import meta_key  # noqa: E402
from bench.harness import build_corpus, job_store, machine, peak_of, scrape, scrape_batches, wait_done  # noqa: E402
from common.testing.cluster import (Process, free_port, start_redis, start_worker, stop_all, tango_argv,  # noqa: E402
                                    wait_ready)
from bench.pairs import Pair, choose_pair, pick_threshold  # noqa: E402
from common.queue.messages import QUEUE_TIER1, QUEUE_TIER2  # noqa: E402
from common.ml.models import load_tier  # noqa: E402
from common.queue.jobs import JobStatus  # noqa: E402
from common.queue.broker import queued_chunks  # noqa: E402
from common.queue.waiting import wait_final  # noqa: E402
from tier2_worker.app import GATHER_BATCHES  # noqa: E402

VARIANTS = ("batcher", "celery-batches", "celery-batches-prefetch1")


@dataclass
class Backlog:
    messages: int
    indices: list[int]  # of the queued items, sorted


@dataclass
class Run:
    """One variant's figures; ``polls`` holds (batches, items) seen new per poll, in order."""

    variant: str
    backlog: Backlog
    seconds: float
    polls: list[tuple[int, int]] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)  # id -> label
    failed: int = 0


def queued(client: redis.Redis, queue: str = QUEUE_TIER2) -> Backlog:
    """The chunks on a queue and their item indices (JSON only)."""
    chunks = queued_chunks(client, queue)
    return Backlog(len(chunks), sorted(item.index for chunk in chunks for item in chunk.items))


def build_backlog(root: Path, pair: Pair, url: str, corpus: Path, job: str, args: argparse.Namespace,
                  threshold: float) -> Backlog:
    """Submit the job with only tier 1 running; return once all its forwarded items are queued. Without
    the audit sample: its items would be queued for tier 2 beside the forwarded ones, counted twice."""
    tier1 = start_worker(1, pair.small, url, root, "--threads", "1", "--batch-size", str(args.batch_size))
    try:
        wait_ready([tier1])
        peak_of(["submit", str(corpus), "--job-id", job, "--threshold", repr(threshold), "--chunk-size",
                 str(args.chunk_size), "--labels", "negative,positive", "--audit", "0"], url)
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            total, tier1_done = (int(x) for x in client.hmget(meta_key(job), "total", "tier1"))
            if client.llen(QUEUE_TIER1) == 0:
                backlog = queued(client)
                if tier1_done + len(backlog.indices) == total:
                    return backlog
            time.sleep(0.2)
        sys.exit("tier 1 did not finish forwarding within 600 s")
    finally:
        tier1.kill()


def start_tier2(variant: str, pair: Pair, url: str, root: Path, port: int, args: argparse.Namespace,
                flush_every: int) -> Process:
    common = ["--threads", str(args.threads), "--batch-size", str(args.batch_size), "--metrics-port", str(port),
              "--max-wait-ms", str(args.max_wait_ms), "--device", args.device, "--precision", args.precision]
    if variant == "batcher":
        inflight = ["-c", str(args.inflight)] if args.inflight else []  # none: the worker's default
        return start_worker(2, pair.big, url, root, *common, *inflight)
    prefetch = ["--prefetch", "1"] if variant.endswith("prefetch1") else []
    entry = tango_argv("worker", "tier2", "--model", str(pair.big), module="bench.celery_batches_tier2")
    return start_worker(2, pair.big, url, root, *common, "--flush-every", str(flush_every), *prefetch, argv=entry)


def run_variant(variant: str, root: Path, pair: Pair, corpus: Path, args: argparse.Namespace,
                threshold: float, job: str) -> Run:
    """A fresh Redis, the backlog, then one tier-2 worker of ``variant`` until the job is done."""
    server = start_redis(root)
    redis_proc, url = server.process, server.url
    processes = [redis_proc]
    try:
        backlog = build_backlog(root, pair, url, corpus, job, args, threshold)
        flush_every = args.flush_every or max(1, round(GATHER_BATCHES * args.batch_size
                                                       / (len(backlog.indices) / backlog.messages)))
        port = free_port()
        tier2 = start_tier2(variant, pair, url, root, port, args, flush_every)
        processes.append(tier2)
        wait_ready([tier2])
        start = time.time()
        polls = poll_batches(port, url, job, args.poll_ms / 1000)
        run = Run(variant, backlog, wait_done(url, job) - start, polls)
        busy, = scrape(port, "tango_inference_seconds_sum")
        print(f"  {variant}: model busy {busy:.2f} s of {run.seconds:.2f} s ({busy / run.seconds:.0%}), "
              f"{busy / len(backlog.indices) * 1000:.1f} ms per item")
        out = root / f"{job}-{variant}.jsonl"
        peak_of(["results", job, "-o", str(out)], url)
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        run.results = {row["id"]: row.get("label") for row in lines}
        run.failed = sum("error" in row for row in lines) + (len(lines) - len(run.results))
        print(f"  {variant}: flush_every {flush_every} messages" if variant != "batcher" else f"  {variant}")
        return run
    finally:
        stop_all(processes)


def poll_batches(port: int, url: str, job: str, every: float) -> list[tuple[int, int]]:
    """New (batches, items) per scrape until the job is final: exact sizes when one batch per poll.
    Each scrape follows a look at the job, so the last one comes after it ended."""
    seen, polls = (0, 0), []

    def scrape_new(now: JobStatus, before: JobStatus | None) -> None:
        nonlocal seen
        batches, items = (int(x) for x in scrape_batches(port))
        if batches > seen[0]:
            polls.append((batches - seen[0], items - seen[1]))
            seen = (batches, items)

    store = job_store(url)
    wait_final(store, store.status(job), every, watch=scrape_new)
    return polls


def report(run: Run, batch_size: int, total: int) -> None:
    items = len(run.backlog.indices)
    batches = sum(b for b, _ in run.polls)
    ran = sum(i for _, i in run.polls)
    mean = ran / batches if batches else 0.0
    exact = [i for b, i in run.polls if b == 1]
    sizes = Counter(exact)
    full = sizes[batch_size] + sum(b for b, i in run.polls if b > 1 and i == b * batch_size)
    print(f"{run.variant}: {items} tier-2 items from {run.backlog.messages} messages in {run.seconds:.2f} s "
          f"= {items / run.seconds:.1f} items/s")
    print(f"  {batches} model batches, mean {mean:.2f} of {batch_size} ({mean / batch_size:.1%}); full: {full} "
          f"({full / batches:.0%}); sizes seen singly: "
          + ", ".join(f"{size}x{n}" for size, n in sorted(sizes.items(), reverse=True))
          + (f"; {sum(b for b, _ in run.polls if b > 1)} batches in shared polls" if len(exact) < batches else ""))
    partial = [(n, i) for n, (b, i) in enumerate(run.polls, 1) if b == 1 and i < batch_size]
    print(f"  {len(partial)} partial batches seen singly (poll number: size, of {len(run.polls)} polls): "
          + ", ".join(f"{n}: {i}" for n, i in partial[:12]) + (", ..." if len(partial) > 12 else ""))
    last_batches, last_items = run.polls[-1] if run.polls else (0, 0)
    if last_batches == 1 and last_items < batch_size and batches > 1:
        rest = (ran - last_items) / (batches - 1)
        print(f"  final batch {last_items} items; mean without it {rest:.2f} ({rest / batch_size:.1%}), "
              f"the tail moves the mean by {rest - mean:+.2f}")
    ok = len(run.results) == total and run.failed == 0 and ran == items
    print(f"  results: {len(run.results)} of {total} items stored, {run.failed} failed or repeated; model ran "
          f"{ran} items for {items} queued -> {'complete, no duplicates' if ok else 'NOT COMPLETE'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS[:2]))
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=int, default=50, help="our max wait = celery-batches flush_interval")
    parser.add_argument("--inflight", type=int, default=None,
                        help="our batcher's task threads (messages held) [default: tango worker's, the batch size]")
    parser.add_argument("--flush-every", type=int, default=0,
                        help="celery-batches messages per flush [default: the messages that carry "
                             f"{GATHER_BATCHES} x batch size items, the pool our batcher gathers]")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--poll-ms", type=int, default=20)
    parser.add_argument("--stand-in", action="store_true")
    parser.add_argument("--device", default="cpu", help="the tier-2 worker's device: cpu, cuda, ... (bench/gpu_check.sh)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="half precision: GPU only")
    parser.add_argument("--threads", type=int, default=1, help="the tier-2 worker's torch threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tango-backlog-bench-") as tmp:
        root = Path(tmp)
        pair = choose_pair(root, args.stand_in)
        corpus = root / "corpus.jsonl"
        sample = build_corpus(corpus, args.items)
        threshold = pick_threshold(pair, load_tier(str(pair.small), batch_size=args.batch_size), sample[:1000],
                                   args.threshold)
        print(f"machine: {machine()}\nmodels: {pair.label}")
        print(f"{args.items} SST-2 train sentences, threshold {threshold:.4f}, chunk size {args.chunk_size}, "
              f"batch size {args.batch_size}, max wait {args.max_wait_ms} ms; tier 2 on {args.device} "
              f"({args.precision}, {args.threads} torch thread(s)), tier 1 on 1 torch thread")
        runs: dict[str, list[Run]] = {name: [] for name in args.variants}
        for round_ in range(1, args.rounds + 1):
            for variant in args.variants:
                print(f"round {round_}, {variant}: building the backlog")
                runs[variant].append(run_variant(variant, root, pair, corpus, args, threshold, f"backlog-{round_}"))
                report(runs[variant][-1], args.batch_size, args.items)
        print(f"load average after: {machine().rsplit('load average ', 1)[1]}")
    compare(runs)


def compare(runs: dict[str, list[Run]]) -> None:
    """Same backlog and same labels across variants; throughput ratio to our batcher, per round."""
    first = [r for rs in runs.values() for r in rs]
    same_backlog = all(r.backlog.indices == first[0].backlog.indices for r in first)
    same_labels = all(r.results == first[0].results for r in first)
    print(f"same backlog in every run: {same_backlog}; identical labels in every run: {same_labels}")
    for variant, rs in runs.items():
        if variant == "batcher" or "batcher" not in runs:
            continue
        ratios = [len(o.backlog.indices) / o.seconds / (len(b.backlog.indices) / b.seconds)
                  for o, b in zip(rs, runs["batcher"])]
        print(f"{variant} / batcher throughput: " + ", ".join(f"{r:.3f}" for r in ratios)
              + f"; geometric mean {math.prod(ratios) ** (1 / len(ratios)):.3f}")


if __name__ == "__main__":
    main()
