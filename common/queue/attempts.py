"""Chunk attempts and the label claim: what a worker settles before it runs a chunk.

Starts are counted, not failures, because a process killed by its chunk cannot count its own
failure: the count is what caps a chunk that kills every worker. The label set of a job submitted
before any worker was up is fixed here too, by the first worker that takes one of its chunks.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from common.queue.keys import attempts_key, meta_key

if TYPE_CHECKING:
    from redis.commands.core import Script


class ChunkAttempts:
    """The attempts half of ``ResultStore`` (which supplies the scripts)."""

    _begin: "Script"
    _refund: "Script"
    _claim_labels: "Script"

    def begin(self, job: str, tier: int, chunk: str) -> tuple[str | None, int]:
        """The job's state and this start's attempt number for the chunk (1 on first delivery).

        Counting starts rather than failures is what lets a worker cap a chunk
        that kills its process: a dead process cannot count its own failure.
        """
        state, attempt = self._begin(keys=[meta_key(job), attempts_key(job)], args=[f"{tier}:{chunk}"])
        return (state or None), int(attempt)

    def refund(self, job: str, tier: int, chunk: str) -> None:
        """Take back one counted start of a chunk: it ended because Redis was away, not by a crash."""
        self._refund(keys=[attempts_key(job)], args=[f"{tier}:{chunk}"])

    def claim_labels(self, job: str, labels: list[str]) -> list[str] | None:
        """The job's label set, fixed to ``labels`` if it had none yet; None when the job is gone."""
        current = self._claim_labels(keys=[meta_key(job)], args=[json.dumps(list(labels))])
        return json.loads(current) if current else None
