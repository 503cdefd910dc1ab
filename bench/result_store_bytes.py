"""Redis memory per result: a job's N results written, then drained as ``tango results --drain`` does.

Writes N realistic results in chunks (as workers do) into a scratch redis-server and prints the
growth of ``used_memory`` per item after the writes and again after the drain, when only the job's
record and its answered bitmap (1 bit per item) remain.

    python bench/result_store_bytes.py --items 100000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.queue.config import ClusterSettings  # noqa: E402
from common.queue.results import ResultRecord  # noqa: E402
from common.queue.jobs import JobSpec
from common.queue.store import ResultStore  # noqa: E402
from common.testing.cluster import start_redis  # noqa: E402


def used(store: ResultStore) -> int:
    return int(store.client.info("memory")["used_memory"])


def measure(store: ResultStore, items: int, chunk: int) -> tuple[float, float]:
    """Bytes per item retained after writing every result, and after draining them all."""
    base = used(store)
    store.create_job(JobSpec(job="bytes", total=items, labels=["negative", "positive"], threshold=0.9,
                             chunk_size=chunk))
    store.mark_submitted("bytes")
    for start in range(0, items, chunk):
        store.write("bytes", [(i, ResultRecord(f"item-{i:08d}", "positive", 0.9731234, 1 + i % 5 // 4,
                                               "models/small"), None) for i in range(start, min(start + chunk, items))])
    written = used(store)
    store.drain("bytes", items)
    return (written - base) / items, (used(store) - base) / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tango-bytes-") as tmp:
        server = start_redis(Path(tmp))
        try:
            before, after = measure(ResultStore.open(ClusterSettings(redis_url=server.url)), args.items, args.chunk)
        finally:
            server.stop()
    print(f"{args.items} results: {before:.1f} bytes/item in Redis before drain, {after:.2f} after")


if __name__ == "__main__":
    main()
