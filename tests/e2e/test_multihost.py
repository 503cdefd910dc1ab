"""The cluster across a real network: Redis, two tier-1 workers and a tier-2 worker each on a host
of their own (a Linux network namespace on a bridge), the `tango` CLI on the root namespace.

Everything else runs the cluster on loopback, where a link never fails. Here every party reaches
Redis at its namespace address over a veth link, and one link is cut mid-job for longer than the
visibility timeout: the task its worker held must come back to the other tier-1 worker, and the
job must still end with each item answered exactly once. Skipped where namespaces cannot be made.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.queue.celery_app import make_app
from common.queue.config import ClusterSettings
from common.queue.keys import UNACKED, meta_key, results_key
from common.testing.chaos import Fleet, account, drained, progress, until
from common.testing.cluster import (ROOT, Process, RedisServer, celery_argv, cluster_env, start_redis, start_worker,
                                    tango_argv, wait_ready)
from common.testing.netns import Network, network, unavailable
from tests.e2e.jobs import embedded, read_jsonl

VISIBILITY_TIMEOUT = 5.0  # seconds; short so that the cut worker's task comes back within the test
SETTINGS = {"TANGO_VISIBILITY_TIMEOUT": repr(VISIBILITY_TIMEOUT)}  # every party's, the CLI's too
HOSTS = ("redis", "t1", "t1b", "t2")  # one namespace each; the CLI is the root namespace
WORKERS = {"t1": 1, "t1b": 1, "t2": 2}  # the host a worker runs on, and its tier
THRESHOLD = 0.9
WAIT_TIMEOUT = 240.0  # seconds `tango wait` may take on a slow, loaded machine, not a timing target
STRIKES = 6  # tries at cutting the tier-1 host while its worker holds a task
SETTLE = 0.5  # seconds for what a host sent just before its cut to reach Redis
_RECEIVED = re.compile(r"Task tango\.tier1\.classify\[([0-9a-f-]+)\] received")


@dataclass
class Site:
    """The hosts, the Redis on one of them, the workers on the others (by host name) and their logs."""

    net: Network
    server: RedisServer
    workers: dict[str, Process]
    logs: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models):
    """The four hosts and their processes, all killed and the namespaces deleted at the end."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    logs = tmp_path_factory.mktemp("multihost")
    with network(HOSTS) as net:
        redis_host = net["redis"]
        server = start_redis(logs, "--protected-mode", "no", host=redis_host.address, prefix=redis_host.prefix)
        workers: dict[str, Process] = {}
        try:
            workers = {host: start_host_worker(net, host, tier, tiny_models, server.url, logs)
                       for host, tier in WORKERS.items()}
            wait_ready(list(workers.values()))
            yield Site(net, server, workers, logs)
        finally:
            for worker in workers.values():
                worker.kill()
            server.crash()


def start_host_worker(net: Network, host: str, tier: int, models: dict, url: str, logs: Path) -> Process:
    """`celery worker` on ``host``'s network, as a user would start it there (one torch thread, so
    that its scores equal embedded mode's)."""
    model = models["small" if tier == 1 else "big"]
    return start_worker(tier, model, url, logs, name=host, argv=[*net[host].prefix, *celery_argv(tier)],
                        env={"TANGO_THREADS": "1", **SETTINGS})


def tango(*args: str, url: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI on the root namespace, with the cluster's settings (the visibility timeout too)."""
    return subprocess.run(tango_argv(*args), cwd=ROOT, env=cluster_env(url, **SETTINGS), capture_output=True,
                          text=True, timeout=timeout)


def write_corpus(path: Path, sentences: list[tuple[str, str]]) -> list[str]:
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": text, "label": label}) + "\n"
                            for i, (text, label) in enumerate(sentences)), encoding="utf-8")
    return [f"s{i}" for i in range(len(sentences))]


def submit(site: Site, corpus: Path, job: str, models: dict, *options: str) -> None:
    done = tango("submit", str(corpus), "--job-id", job, "--threshold", str(THRESHOLD), "--small",
                 str(models["small"]), "--big", str(models["big"]), *options, url=site.server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == job


def wait(site: Site, job: str) -> None:
    waited = tango("wait", job, "--interval", "0.2", "--timeout", str(WAIT_TIMEOUT), url=site.server.url,
                   timeout=WAIT_TIMEOUT + 60)
    assert waited.returncode == 0, waited.stderr[-2000:]
    until(lambda: drained(site.server.client()), "the queues and unacked to drain")


def answers(records: list[dict]) -> list[tuple]:
    return [(r["id"], r["label"], r["tier"], r["score"]) for r in records]


def peers(site: Site) -> set[str]:
    """The addresses Redis sees its clients connect from."""
    return {entry["addr"].rsplit(":", 1)[0] for entry in site.server.client().client_list()}


def test_a_job_across_hosts_equals_embedded_mode(site, tiny_models, sentences, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, sentences[:400])
    expected = embedded(corpus, tmp_path / "embedded.jsonl", tiny_models, THRESHOLD)
    assert 0 < sum(r["tier"] == 1 for r in expected) < len(expected), "both tiers should answer some items"

    submit(site, corpus, "across", tiny_models)
    wait(site, "across")
    fetched = tango("results", "across", "-o", str(tmp_path / "cluster.jsonl"), url=site.server.url)
    assert fetched.returncode == 0, fetched.stderr
    assert answers(read_jsonl(tmp_path / "cluster.jsonl")) == answers(expected)

    meta = site.server.client().hgetall(meta_key("across"))
    assert (meta["state"], int(meta["done"]), int(meta["failed"])) == ("done", 400, 0)
    # every party talked to Redis over its own link, none over loopback
    assert {site.net[h].address for h in WORKERS} | {site.net.gateway} <= peers(site)
    assert "job 'across' chunk" in site.workers["t2"].log_text(), "tier 2 should have answered the unsure items"


def held_task(worker: Process) -> str | None:
    """The id of the tier-1 task the worker's log shows received and not yet ended (so not yet
    acknowledged: Celery acknowledges after the task returns), or None."""
    received = _RECEIVED.findall(worker.log_text())
    return received[-1] if received and not ended(worker, received[-1]) else None


def ended(worker: Process, task: str) -> bool:
    """Whether the worker's log shows the task over (succeeded, given back because Redis was out of
    reach, or any other end Celery logs with the task's id)."""
    text = worker.log_text()
    return re.search(rf"\[{task}\] (?!received)", text) is not None or \
        "giving the task back" in text[text.find(f"[{task}] received"):]


def unacked_tasks(site: Site) -> dict[str, str]:
    """Task id -> delivery tag of every message some worker holds unacknowledged."""
    raw = site.server.client().hgetall(UNACKED)
    return {json.loads(value)[0]["headers"]["id"]: tag for tag, value in raw.items()}


def strike(site: Site, job: str) -> tuple[str, str] | None:
    """Cut the t1 host while its worker holds a task of the running job; the task id and the delivery
    tag it holds it under, or None (link up again) when the cut fell between two tasks.

    The worker and Redis are read ``SETTLE`` seconds after the cut: what either sent just before it
    (an acknowledgement, the next task's claim) may still be on its way at the moment of the cut."""
    worker = site.workers["t1"]
    until(lambda: held_task(worker) is not None or progress(site.server.client(), job)[0] != "running",
          "the t1 worker to take a task")
    if held_task(worker) is None:
        return None
    site.net.cut("t1")
    time.sleep(SETTLE)
    task = held_task(worker)
    tag = unacked_tasks(site).get(task) if task else None
    if tag is None:
        site.net.mend("t1")
        return None
    return task, tag


def tier1_consumer(site: Site, host: str, on: bool) -> None:
    """Stop or restart a tier-1 worker's consuming (Celery's remote control, over Redis)."""
    match = re.search(rf"{host}@(\S+) ready\.", site.workers[host].log_text())
    assert match, site.workers[host].log_text()[-2000:]
    control = make_app("client", ClusterSettings(redis_url=site.server.url)).control
    change = control.add_consumer if on else control.cancel_consumer
    assert change("tier1", destination=[f"{host}@{match.group(1)}"], reply=True, timeout=30)


def outage(site: Site, task: str, tag: str) -> float:
    """Keep t1 cut off until the visibility timeout has handed its task to t1b and t1b finished it,
    and for longer than the timeout in any case; the outage's length in seconds."""
    cut_at = time.monotonic() - SETTLE
    until(lambda: f"[{task}] succeeded" in site.workers["t1b"].log_text(),
          "the cut worker's task to be redone on t1b", timeout=WAIT_TIMEOUT)
    assert tag not in site.server.client().hkeys(UNACKED), "the cut worker's claim must have been taken back"
    until(lambda: time.monotonic() - cut_at > VISIBILITY_TIMEOUT + 1, "the outage to outlast the visibility timeout")
    site.net.mend("t1")
    return time.monotonic() - cut_at


def test_a_host_cut_off_past_the_visibility_timeout_loses_nothing(site, tiny_models, sentences, tmp_path, capsys):
    ids = write_corpus(tmp_path / "corpus.jsonl", sentences)
    start = time.monotonic()
    # the whole job waits on the queue, then t1 alone works through its chunks back to back: a cut
    # then finds a task in t1's hands however fast or slow the machine; t1b joins after the cut
    for host in ("t1", "t1b"):
        tier1_consumer(site, host, on=False)
    submit(site, tmp_path / "corpus.jsonl", "cut", tiny_models, "--chunk-size", "100")
    tier1_consumer(site, "t1", on=True)
    struck, tries = None, 0
    while not struck and tries < STRIKES and progress(site.server.client(), "cut")[0] == "running":
        struck, tries = strike(site, "cut"), tries + 1
    tier1_consumer(site, "t1b", on=True)
    assert struck, f"no cut caught the t1 worker holding a task in {tries} tries"
    task, tag = struck
    seconds_down = outage(site, task, tag)
    wait(site, "cut")
    # back on the network, the cut worker ends the task it held; the store ignores its answers
    until(lambda: ended(site.workers["t1"], task), "the cut worker to end its task", timeout=WAIT_TIMEOUT)
    until(lambda: drained(site.server.client()), "its late forward to tier 2 and its acknowledgement")

    fleet = Fleet(site.server, tiny_models, site.logs, workers=list(site.workers.values()))
    figures = account(site.server, "cut", ids, tmp_path / "results.jsonl", fleet, 1, time.monotonic() - start)
    with capsys.disabled():
        print(f"\nt1 cut off for {seconds_down:.1f} s holding task {task} (try {tries}; kills = cuts)\n"
              f"{figures.report()}")
    client = site.server.client()
    meta = client.hgetall(meta_key("cut"))
    assert (figures.lost, figures.duplicated, figures.failed, figures.state) == (0, 0, 0, "done")
    assert int(meta["done"]) == client.hlen(results_key("cut")) == len(read_jsonl(tmp_path / "results.jsonl")) \
        == len(ids)
    assert site.workers["t1"].running(), "the cut worker should ride out the outage"
