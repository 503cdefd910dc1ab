"""In-process tier runtimes on a real Redis, for the workers' unit tests (no Celery worker)."""
from __future__ import annotations

import json

from common.queue.messages import Chunk, WorkItem
from common.queue.broker import queued_chunks
from common.queue.store import JobSpec, ResultStore
from common.ml.models import load_for_worker
from common.queue.decisions import decide_tier1, decide_tier2
from common.queue.runtime import TierRuntime

TEXTS = ["a gripping , funny film", "dull and far too long", "the cast is fine", "i hated every minute",
         "a triumph", "not bad at all , really", "what a mess", "quietly moving and sad"]
LABELS = ("negative", "positive")


def runtime(tier: int, model, redis_url: str) -> TierRuntime:
    env = {"TANGO_MODEL": str(model), "TANGO_REDIS_URL": redis_url, "TANGO_THREADS": "1"}
    rt = TierRuntime(tier=tier, decide=decide_tier1 if tier == 1 else decide_tier2, loader=load_for_worker, env=env)
    rt.ensure_loaded()
    return rt


def new_job(store: ResultStore, job: str, total: int = len(TEXTS), labels=LABELS, threshold: float = 0.9) -> None:
    store.create_job(JobSpec(job=job, total=total, labels=list(labels), threshold=threshold, chunk_size=total))
    store.mark_submitted(job)


def chunk(job: str, tier: int = 1, threshold: float = 0.9, labels=LABELS, gold: str | None = None,
          audit: float = 0.0) -> dict:
    items = tuple(WorkItem(i, f"id{i}", text, gold=gold) for i, text in enumerate(TEXTS))
    return Chunk(job, 0, tier, threshold, tuple(labels), items, audit=audit).encode()


def queued(store: ResultStore, queue: str) -> list[Chunk]:
    """The chunks waiting on a kombu queue in Redis, decoded from their JSON envelopes."""
    for raw in store.client.lrange(queue, 0, -1):
        assert json.loads(raw)["content-type"] == "application/json"
    return queued_chunks(store.client, queue)
