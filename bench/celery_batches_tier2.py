"""Tier 2 on celery-batches instead of our own Batcher: a bench-only worker for bench/tier2_backlog.py.

``celery_batches.Batches`` buffers messages in the consumer and hands the task a list of them
when ``flush_every`` *messages* have arrived or every ``flush_interval`` seconds (a repeating
timer, not a deadline per message). It counts messages, not items: a message is one tier-1
chunk's uncertain items (about 15 of 64 at 25% escalation), so ``--flush-every`` is chosen by
the caller as the number of messages that fills our batcher's pool (``GATHER_BATCHES`` x
``--batch-size`` = 128 items), so both sides sort and cut pools of about the same size. A
message cannot be split, so a flush rarely ends on a batch boundary.

Nothing of tier 2 is copied: the flush runs the big model once over the items of all its
messages (``TierModel.probabilities`` sorts them by length and cuts batches of ``--batch-size``,
as it does for our batcher's pool), then every message goes through ``TierRuntime.run`` -- the
same decode, job check, ``decide`` and idempotent ``ResultStore.write`` as tier2_worker -- whose
scorer answers from that one pass (``PooledRows``). Acknowledgement stays late: celery-batches
acks ``acks_late`` requests when the batch task returns, after the writes.

Prefetch caps the batch (celery-batches #17): the worker holds at most concurrency x
``worker_prefetch_multiplier`` unacknowledged messages, and our app's multiplier is 1, so
``--prefetch`` raises it (default 2 x flush_every: one flush running, the next one gathering).
"""
from __future__ import annotations

import argparse
import os
import socket
from typing import Sequence

import numpy as np

from common.data.batches import pair_texts
from common.queue.config import PRECISIONS, ClusterSettings
from common.errors import MessageError
from common.queue.faults import Scorer
from common.queue.messages import TASK_TIER2, Chunk
from common.queue.config import WorkerSettings
from common.queue.decisions import decide_tier2
from common.queue.runtime import TierRuntime

Key = tuple[tuple[str, ...], "tuple[str, ...] | None"]


class PooledRows:
    """A scorer that answers each message's texts from one model pass over the whole flush.

    ``ChunkProcessor.process`` asks its scorer for a chunk's (texts, pairs); rows computed by ``load``
    are handed out once, anything else (a chunk whose pooled pass failed, the one-by-one retry
    of ``item_probabilities``) goes to the model itself, so faults stay contained per item."""

    def __init__(self, model: Scorer) -> None:
        self.model = model
        self._rows: dict[Key, np.ndarray] = {}

    def load(self, payloads: Sequence[object]) -> None:
        """Run the model once per input kind (single texts, pairs) over the decodable messages."""
        chunks = []
        for payload in payloads:
            try:
                chunks.append(Chunk.decode(payload))
            except MessageError:
                continue  # TierRuntime.run rejects and logs it
        keys = [_key(chunk) for chunk in chunks]
        for with_pairs in (False, True):
            pooled = [key for key in keys if (key[1] is not None) == with_pairs]
            if pooled:
                self._pool(pooled)

    def _pool(self, keys: list[Key]) -> None:
        texts = [t for key in keys for t in key[0]]
        pairs = [p for key in keys for p in key[1]] if keys[0][1] is not None else None
        try:
            probs = self.model.probabilities(texts, pairs)
        except Exception:  # noqa: BLE001 - each chunk reruns on its own through item_probabilities
            return
        offset = 0
        for key in keys:
            self._rows[key] = probs[offset:offset + len(key[0])]
            offset += len(key[0])

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        rows = self._rows.pop((tuple(texts), None if pairs is None else tuple(pairs)), None)
        return rows if rows is not None else self.model.probabilities(texts, pairs)


def _key(chunk: Chunk) -> Key:
    """What ``ChunkProcessor.process`` passes its scorer for this chunk."""
    pairs = pair_texts(chunk.items)
    return tuple(item.text for item in chunk.items), None if pairs is None else tuple(pairs)


def make_app(flush_every: int, flush_interval: float):
    """Tier 2's runtime with a celery-batches task under tier 2's task name."""
    from celery_batches import Batches

    from common.ml.models import load_for_worker

    runtime = TierRuntime(tier=2, decide=decide_tier2, loader=load_for_worker,
                          batching=lambda settings, model: PooledRows(model))

    @runtime.app.task(name=TASK_TIER2, base=Batches, flush_every=flush_every, flush_interval=flush_interval,
                      shared=False)  # a shared task would join tier 1's app too
    def classify(requests: list) -> None:
        runtime.ensure_loaded()
        payloads = [request.args[0] if request.args else None for request in requests]
        runtime.scorer.load(payloads)
        for payload in payloads:
            runtime.run(payload)

    return runtime.app


def main(argv: list[str] | None = None) -> None:
    """``worker tier2 --model M ...``: the arguments ``common.testing.cluster.start_worker`` passes ``tango worker``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("tier", choices=["tier2"])
    parser.add_argument("--model", required=True)
    parser.add_argument("-n", "--name", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--max-wait-ms", type=int, default=50, help="flush_interval")
    parser.add_argument("--flush-every", type=int, default=9, help="messages per flush")
    parser.add_argument("--prefetch", type=int, default=None, help="messages held [default: 2 x flush-every]")
    args = parser.parse_args(argv)
    settings = WorkerSettings(tier=2, model=args.model, batch_size=args.batch_size, threads=args.threads,
                              device=args.device, precision=args.precision, cluster=ClusterSettings.from_env(),
                              metrics_port=args.metrics_port)
    os.environ.update(settings.to_env())
    app = make_app(args.flush_every, args.max_wait_ms / 1000)
    # threads pool, one thread: one model, flushes run beside the consumer that keeps buffering
    app.worker_main(["worker", "-Q", "tier2", "-P", "threads", "-c", "1", "-l", "INFO",
                     "--prefetch-multiplier", str(args.prefetch or 2 * args.flush_every),
                     "-n", args.name or f"tier2-batches-{os.getpid()}@{socket.gethostname()}",
                     "--without-mingle", "--without-gossip"])


if __name__ == "__main__":
    main()
