"""Peak memory of ``tango submit``'s reading of a corpus at 10 million items, against 100,000.

``submit`` validates the whole file (``summarize``) and then reads it again to send it in chunks;
neither pass may hold the corpus, and duplicate ids are still refused, so the peak should be
flat in the corpus size (target: 10M within 1.5x of 100k). A set of every id's hash made it
grow by ~700 MB at 10M; the Bloom filters of ``common.data.dedup`` (a probe inside the validating
pass up to 2.8 million ids, a candidate pass of their own beyond) take at most 16 MiB, plus the
few ids that hit them. Each size is a JSONL corpus of SST-2 train
sentences (cycled) with unique ids, read in a fresh process by exactly the path ``submit``
takes without a broker: ``summarize``, then ``chunked(read_corpus(...))`` to the end. The peak is
the kernel's (ru_maxrss of that process, checked against its VmHWM: Linux carries the peak of
the process that started it over into ru_maxrss, so this script imports nothing heavy before
starting it); the corpora go in a temporary folder, deleted after.

    python bench/submit_memory.py --sizes 100000 10000000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.queue.config import AUTO_CHUNK_MAX  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SST2_TRAIN = ROOT.parent / "shared" / "data" / "glue" / "sst2" / "train.tsv"


def write_corpus(path: Path, items: int, source: Path) -> None:
    """``items`` JSON lines, ids ``doc-000000123``, texts the source's sentences cycled."""
    sentences = [json.dumps(line.split("\t")[0]) for line in source.read_text(encoding="utf-8").splitlines()[1:]]
    lines = (f'{{"id": "doc-{n:09d}", "text": {sentences[n % len(sentences)]}}}\n' for n in range(items))
    with path.open("w", encoding="utf-8") as out:
        out.writelines(lines)


def read_as_submit(path: str, chunk_size: int) -> None:
    """Run in a fresh process: submit's two passes over ``path``; prints items, seconds and peak RSS."""
    from common.data.corpus import CorpusSpec, read_corpus, summarize
    from common.queue.submission import chunked

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    spec = CorpusSpec()
    summary = summarize(path, spec)
    items = sum(len(chunk.items) for chunk in chunked(read_corpus(path, spec, None, summary.duplicate_lines),
                                                       "bench", chunk_size, 0.9, []))
    assert items == summary.items, (items, summary.items)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"items": items, "seconds": time.perf_counter() - start, "peak_mb": peak / 1024,
                      "imports_mb": imported / 1024, "hwm_mb": _vm_hwm_kib() / 1024}))


def _vm_hwm_kib() -> int:
    """This process's own peak RSS (ru_maxrss may hold the starting process's instead)."""
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def measure(path: Path, chunk_size: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--read", str(path), "--chunk-size", str(chunk_size)],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"reading {path} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 10_000_000])
    parser.add_argument("--source", type=Path, default=SST2_TRAIN, help="a TSV whose first column is text")
    parser.add_argument("--chunk-size", type=int, default=AUTO_CHUNK_MAX, help="as submit's auto on a large corpus")
    parser.add_argument("--read", help=argparse.SUPPRESS)  # the measured child process
    args = parser.parse_args()
    if args.read:
        read_as_submit(args.read, args.chunk_size)
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())  # not bench.harness.machine(): it imports torch
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, python {platform.python_version()}, "
          f"load average {load}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="tango-submit-memory-") as tmp:
        for size in args.sizes:
            corpus = Path(tmp) / f"corpus-{size}.jsonl"
            write_corpus(corpus, size, args.source)
            rows[size] = measure(corpus, args.chunk_size)
            corpus.unlink()
            row = rows[size]
            print(f"{size:>11,} items: peak RSS {row['peak_mb']:7.1f} MiB (VmHWM {row['hwm_mb']:.1f}; "
                  f"{row['imports_mb']:.1f} after imports), both passes {row['seconds']:7.1f} s "
                  f"({row['seconds'] / size * 1e6:.2f} us/item)", flush=True)
    first, last = args.sizes[0], args.sizes[-1]
    ratio = rows[last]["peak_mb"] / rows[first]["peak_mb"]
    print(f"peak RSS {last:,} vs {first:,} items: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
