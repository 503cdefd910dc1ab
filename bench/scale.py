"""Corpora of any size: the same job at 100k and 1M items, with Redis, submit and the rate flat.

The near-free model of ``bench/queue_ceiling.py`` labels SST-2 train sentences (cycled) while
``tango results --follow --drain`` writes the results out and deletes them from Redis. The
submit keeps at most ``--window`` unanswered items in the broker and the export keeps only
the tail not yet written in the result store, so neither Redis's peak memory nor the
submitter's should grow with the corpus, nor should the rate fall. Each size runs on a fresh
Redis and fresh workers, the sizes interleaved ``--repeats`` times (a 100k job lasts seconds, and one run's
rate swings by 15% either way with whatever else the machine does); the script prints every run
and the ratios of the largest size to the smallest, from each size's median rate and its highest
memory peaks (targets: Redis peak and submit peak at most 1.5x, rate at least 0.9x). It also prints
what Redis still holds for each job once the export drained it, key by key (``MEMORY USAGE``): its
bitmaps (answered, and audited with the default audit), one bit per item each, plus a constant.

    python bench/scale.py --sizes 100000 1000000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from bench.harness import build_corpus, fresh_cluster, machine, peak_rss_mb, run_exported  # noqa: E402
from bench.queue_ceiling import near_free_model  # noqa: E402
from common.queue.config import DEFAULT_WINDOW  # noqa: E402

MIB = 1024 * 1024
BITMAPS = ("answered", "audited")  # one bit per item each: what a drained job must keep


def run_size(root: Path, items: int, args: argparse.Namespace, model: Path, threshold: float) -> dict:
    """One job of ``items`` through a fresh Redis and fresh workers, exported with --drain as it runs."""
    corpus, out = root / f"corpus-{items}.jsonl", root / f"results-{items}.jsonl"
    if not corpus.exists():
        build_corpus(corpus, items)
    out.unlink(missing_ok=True)  # a repeat's: --drain writes only a new file
    with fresh_cluster(root, model, model, args.tier1_processes) as server:
        client = redis.Redis.from_url(server.url)
        name = f"scale-{items}"
        job = run_exported(server.url, corpus, name, out, ["--threshold", repr(threshold), "--chunk-size",
                           str(args.chunk_size), "--labels", "negative,positive", "--window", str(args.window)],
                           drain=True)
        memory = client.info("memory")
        left = job_footprint(client, name)
        lines = _count_lines(out)
        if lines != items:
            sys.exit(f"the export of {name} wrote {lines} lines for {items} items")
        return {"items": items, "seconds": job.seconds, "exported_seconds": job.exported_seconds,
                "rate": items / job.seconds, "submit_mb": job.submit_mb, "export_mb": job.export_mb,
                "redis_peak_mb": memory["used_memory_peak"] / MIB, "redis_left_mb": memory["used_memory"] / MIB,
                "redis_rss_mb": peak_rss_mb(server.process), "left": left}


def job_footprint(client: redis.Redis, job: str) -> dict[str, int]:
    """Bytes Redis holds for each key of the job (its last name part: meta, answered, ...)."""
    keys = sorted(client.scan_iter(match=f"tango:{{{job}}}:*", count=1000))
    return {key.decode().rsplit(":", 1)[1]: int(client.memory_usage(key, samples=0) or 0) for key in keys}


def _footprint(left: dict[str, int]) -> str:
    """One line: every key's bytes, the total, and what is left beyond the bitmaps."""
    bitmaps = sum(left.get(name, 0) for name in BITMAPS)
    keys = ", ".join(f"{name} {size:,}" for name, size in left.items())
    return (f"left in Redis for the job: {sum(left.values()):,} B in {len(left)} keys ({keys}); "
            f"beyond its bitmaps: {sum(left.values()) - bitmaps:,} B")


def _summary(runs: list[dict]) -> dict:
    """One size over its runs: the median rate and the highest memory peaks."""
    return {"items": runs[0]["items"], "rate": statistics.median(r["rate"] for r in runs),
            **{key: max(r[key] for r in runs) for key in ("redis_peak_mb", "submit_mb")}}


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="submit's --window (items)")
    parser.add_argument("--tier1-processes", type=int, default=1)
    parser.add_argument("--escalate", type=float, default=0.2, help="share of items tier 1 should send on")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each size, interleaved")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    runs: dict[int, list[dict]] = {items: [] for items in args.sizes}
    with tempfile.TemporaryDirectory(prefix="tango-scale-") as tmp:
        root = Path(tmp)
        model, threshold = near_free_model(root, args.escalate)
        for items in [size for _ in range(args.repeats) for size in args.sizes]:
            r = run_size(root, items, args, model, threshold)
            runs[items].append(r)
            print(f"{r['items']:>9} items: {r['rate']:,.0f} items/s ({r['seconds']:.1f} s; export done at "
                  f"{r['exported_seconds']:.1f} s); peak MiB: Redis data {r['redis_peak_mb']:.1f} (left at the end "
                  f"{r['redis_left_mb']:.1f}, Redis RSS {r['redis_rss_mb']:.0f}), submit {r['submit_mb']:.0f}, "
                  f"export {r['export_mb']:.0f}", flush=True)
            print(f"{'':>9}        {_footprint(r['left'])}", flush=True)
    small, large = (_summary(runs[items]) for items in (args.sizes[0], args.sizes[-1]))
    scale = large["items"] / small["items"]
    print(f"settings: window {args.window} items, chunk {args.chunk_size}, {args.tier1_processes} tier-1 "
          f"process(es), {args.repeats} run(s) of each size")
    print(f"{scale:g}x the items: Redis peak {large['redis_peak_mb'] / small['redis_peak_mb']:.2f}x (target <= 1.5), "
          f"submit peak {large['submit_mb'] / small['submit_mb']:.2f}x (target <= 1.5), "
          f"rate {large['rate'] / small['rate']:.2f}x (target >= 0.9)")


if __name__ == "__main__":
    main()
