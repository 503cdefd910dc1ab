"""The chaos scenario, shared by ``tests/chaos`` and ``bench/chaos_cluster.py``.

A job runs on a real redis-server with real ``celery worker`` processes while
tier-1 and tier-2 workers are SIGKILLed (sometimes only the pool process
running a task, sometimes the whole worker) and replaced; afterwards every
item is accounted for from what Redis and ``tango results`` hold, never from
what the workers say they did.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import redis

from common.queue.broker import in_broker
from common.queue.keys import UNACKED, failures_key, meta_key, results_key
from common.queue.jobs import ACTIVE_STATES
from common.queue.store import ResultStore
from common.queue.messages import QUEUE_TIER1, QUEUE_TIER2
from common.testing.cluster import (MODEL_READY, ROOT, START_TIMEOUT, Process, RedisServer, cluster_env, run_tango,
                                    start_celery_worker, start_redis, tango_argv, wait_ready)

_DECIDED = re.compile(r"(\d+) decided \((\d+) new\)")


@dataclass
class Figures:
    """What the scenario found; ``lost`` and ``duplicated`` must be 0."""

    items: int
    kills: int
    lost: int
    duplicated: int
    failed: int
    absorbed: int  # redelivered items whose second write the store ignored
    state: str
    seconds: float
    resumed: int = 0  # items the cluster's own stall sweeper sent again
    broker_count: int = 0  # the job's messages the broker still counts once it is drained (must be 0)

    def report(self) -> str:
        return "\n".join(f"{name} {getattr(self, name)}" for name in
                         ("items", "kills", "lost", "duplicated", "failed", "absorbed", "resumed", "state", "seconds"))

    @property
    def clean(self) -> bool:
        """Ended by itself, every item answered once."""
        return (self.state, self.lost, self.duplicated) == ("done", 0, 0)

    @property
    def struck(self) -> bool:
        """Whether any kill landed: a run without one tests nothing."""
        return self.kills > 0


@dataclass
class Fleet:
    """The workers of one scenario, started and replaced by tier; all killed at the end."""

    server: RedisServer
    models: dict[str, Path]
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Process] = field(default_factory=list)

    def add(self, tier: int, url: str | None = None) -> Process:
        name = f"t{tier}-{len(self.workers)}"
        worker = start_celery_worker(tier, name, self.models["small" if tier == 1 else "big"], url or self.server.url,
                                     self.logs, **self.env)
        self.workers.append(worker)
        return worker

    def alive(self, tier: int) -> list[Process]:
        """The tier's workers that run and have loaded their model, oldest first."""
        return [w for w in self.workers if w.tier == tier and not w.stopped
                and w.running() and MODEL_READY in w.log_text()]

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()

    def log_text(self) -> str:
        return "".join(w.log_text() for w in self.workers)


def pool_children(pid: int) -> list[int]:
    """The pool processes a prefork worker forked (Linux ``/proc``)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def busy(worker: Process) -> bool:
    """Whether the worker's log shows a task received and not yet finished (its pool process runs it)."""
    text = worker.log_text()
    return text.rfind("] received") > max(text.rfind("] succeeded in"), text.rfind("exited with"))


def in_flight(client: redis.Redis, queue: str) -> int:
    """Messages of ``queue`` a worker holds unacknowledged right now (kombu's ``unacked`` hash)."""
    return sum(json.loads(raw)[2] == queue for raw in client.hvals(UNACKED))


def until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def write_corpus(path: Path, texts: list[str], n_items: int) -> list[str]:
    """``n_items`` JSON lines cycling through ``texts``; returns the ids in input order."""
    ids = [f"c{i}" for i in range(n_items)]
    with path.open("w", encoding="utf-8") as handle:
        for i, item_id in enumerate(ids):
            handle.write(json.dumps({"id": item_id, "text": f"{texts[i % len(texts)]} #{i}"}) + "\n")
    return ids


def progress(client: redis.Redis, job: str) -> tuple[str, int]:
    """The store's view of the job, with "gone" for a job whose record is not there (yet or any more)."""
    state, answered = ResultStore(client).progress(job)
    return state or "gone", answered


def kill_one(fleet: Fleet, tier: int, whole: bool, rng: random.Random) -> bool:
    """SIGKILL a tier's worker while the tier holds a task (the one running it when its log shows which, a
    chunk lasting milliseconds): its pool process only, or (``whole``) its process group
    followed by a replacement, and sometimes, within 0.4 s, the tier's other worker too (whatever it is
    doing: taking a message, say). Returns False when the tier had nothing in flight to kill."""
    client = fleet.server.client()
    victims = [worker for worker in fleet.alive(tier) if busy(worker)] or fleet.alive(tier)
    if not victims or not in_flight(client, f"tier{tier}"):
        return False
    victim = rng.choice(victims)
    if whole:
        victim.kill()
        fleet.add(tier)
        others = [worker for worker in fleet.alive(tier) if worker is not victim]
        if others and rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 0.4))
            rng.choice(others).kill()
            fleet.add(tier)
        return True
    children = pool_children(victim.pid)
    if not children:
        return False
    os.kill(children[0], signal.SIGKILL)
    return True


def unleash(fleet: Fleet, job: str, kills_per_tier: int, rng: random.Random) -> int:
    """Kill tier-1 and tier-2 workers in turn while the job runs: first pool processes (the task
    comes back at once), then whole workers (it comes back after the visibility timeout), each
    after a random pause so that the blows land at different moments of a task's life."""
    client = fleet.server.client()
    plan = [(tier, n >= (kills_per_tier + 1) // 2) for n in range(kills_per_tier) for tier in (1, 2)]
    kills = 0
    for tier, whole in plan:
        _, before = progress(client, job)
        time.sleep(rng.uniform(0.0, 0.3))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and progress(client, job)[0] in ACTIVE_STATES:
            if kill_one(fleet, tier, whole, rng):
                kills += 1
                break
            time.sleep(0.02)
        # let the cluster make headway before the next blow, so kills spread over the job
        until(lambda: progress(client, job)[0] not in ACTIVE_STATES or progress(client, job)[1] > before,
              "progress after a kill")
    return kills


def account(server: RedisServer, job: str, ids: list[str], out: Path, fleet: Fleet, kills: int,
            seconds: float) -> Figures:
    """Every item's fate, from Redis and from ``tango results``."""
    client = server.client()
    fetched = run_tango("results", job, "--partial", "-o", str(out), redis_url=server.url)
    assert fetched.returncode == 0, fetched.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    got = [r["id"] for r in records]
    meta = client.hgetall(meta_key(job))
    stored = client.hlen(results_key(job)) + client.hlen(failures_key(job))
    counted = int(meta["done"]) + int(meta["failed"])
    duplicated = (len(got) - len(set(got))) + max(counted - stored, 0)
    absorbed = sum(int(d) - int(n) for d, n in _DECIDED.findall(fleet.log_text()))
    return Figures(items=len(ids), kills=kills, lost=len(set(ids) - set(got)), duplicated=duplicated,
                   failed=int(meta["failed"]), absorbed=absorbed, state=meta["state"], seconds=round(seconds, 1),
                   resumed=int(meta.get("resumed") or 0))


def drained(client: redis.Redis) -> bool:
    return client.llen(QUEUE_TIER1) == 0 and client.llen(QUEUE_TIER2) == 0 and client.hlen(UNACKED) == 0


def run_chaos(server: RedisServer, fleet: Fleet, corpus: Path, ids: list[str], job: str, kills_per_tier: int,
              chunk_size: int, out: Path, rng: random.Random, stall_timeout: float) -> Figures:
    """Submit, kill while it runs, wait (no ``--resume-stalled``: the job must end by itself) at most
    ``stall_timeout`` seconds, and account for every item."""
    start = time.monotonic()
    submit = subprocess.Popen(tango_argv("submit", str(corpus), "--job-id", job, "--chunk-size", str(chunk_size),
                                         "--labels", "negative,positive"), cwd=ROOT, env=cluster_env(server.url),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    until(lambda: progress(server.client(), job)[0] != "gone" or submit.poll() is not None, "the job's record")
    kills = unleash(fleet, job, kills_per_tier, rng)  # while submit still sends, too: a loaded machine is slow at it
    _, err = submit.communicate(timeout=START_TIMEOUT)
    assert submit.returncode == 0, err
    waited = run_tango("wait", job, "--interval", "0.2", "--timeout", str(stall_timeout), redis_url=server.url,
                       timeout=stall_timeout + 60)
    broker_count = -1
    if waited.returncode == 0:
        until(lambda: drained(server.client()), "the queues and unacked to drain")
        broker_count = in_broker(server.client(), [job])[job]
    figures = account(server, job, ids, out, fleet, kills, time.monotonic() - start)
    return dataclasses.replace(figures, broker_count=broker_count)


def chaos_scenario(root: Path, models: dict[str, Path], texts: list[str], items: int, kills_per_tier: int,
                   chunk_size: int, visibility_timeout: float, seed: int = 0, stall_timeout: float = 600.0,
                   job: str = "chaos") -> Figures:
    """The whole scenario on a fresh redis-server: two workers per tier, a job of ``items``, the kills
    (their victims and moments drawn from ``seed``)."""
    server = start_redis(root)
    fleet = Fleet(server, models, root, env={"TANGO_VISIBILITY_TIMEOUT": repr(visibility_timeout)})
    try:
        for tier in (1, 1, 2, 2):
            fleet.add(tier)
        wait_ready(fleet.workers)
        ids = write_corpus(root / "corpus.jsonl", texts, items)
        return run_chaos(server, fleet, root / "corpus.jsonl", ids, job, kills_per_tier, chunk_size,
                         root / "results.jsonl", random.Random(seed), stall_timeout)
    finally:
        fleet.close()
        server.stop()
