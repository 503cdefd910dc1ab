"""Redis killed and restarted mid-job: with an append-only file the job finishes exactly; without
persistence the CLI says the job's records are gone and exits non-zero, never reporting it complete.

kombu's Redis transport pops a message and records it as unacknowledged in two
steps, so a crash between them loses that one message; the store knows which
items have no result, and ``tango wait --resume-stalled`` (or ``tango resume``) sends them again.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
import sys

import pytest

from common.testing.chaos import Fleet, account, drained, progress, until, write_corpus
from common.testing.cluster import ROOT, RedisServer, cluster_env, run_tango, start_redis, wait_ready

N_ITEMS = 3000
AOF = ("--appendonly", "yes", "--appendfsync", "always")


@pytest.fixture()
def texts(glue_dir) -> list[str]:
    return [row.split("\t")[0] for row in (glue_dir / "sst2" / "train.tsv").read_text().splitlines()[1:1001]]


def start_job(server: RedisServer, fleet: Fleet, texts: list[str], tmp_path,
              job: str) -> tuple[list[str], subprocess.Popen, Path]:
    """The job submitted, a `tango wait` on it polling in the background (its stderr goes to the
    returned file), then the workers started: so the job is still running when the test strikes,
    however fast the machine runs it."""
    ids = write_corpus(tmp_path / "corpus.jsonl", texts, N_ITEMS)
    submitted = run_tango("submit", str(tmp_path / "corpus.jsonl"), "--job-id", job, "--chunk-size", "10",
                          "--labels", "negative,positive", redis_url=server.url)
    assert submitted.returncode == 0, submitted.stderr
    log = tmp_path / "wait.err"
    waiter = subprocess.Popen([sys.executable, "-m", "cli.main", "wait", job, "--interval", "0.2",
                               "--resume-stalled"], cwd=ROOT,
                              env=cluster_env(server.url), stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    until(lambda: f"{job}:" in log.read_text(), "`tango wait` to show the job")  # it has seen the job
    fleet.add(1)
    fleet.add(2)
    wait_ready(fleet.workers)
    return ids, waiter, log


def crash_and_restart(server: RedisServer, job: str) -> None:
    """SIGKILL Redis once the job has answered some items, and start it again on the same port and dir."""
    client = server.client()
    until(lambda: progress(client, job)[1] > 0, "the job to start")
    server.crash()
    server.restart()


def test_with_aof_workers_reconnect_and_the_job_finishes(tiny_models, texts, tmp_path, capsys):
    server = start_redis(tmp_path, *AOF)
    fleet = Fleet(server, tiny_models, tmp_path, env={"TANGO_VISIBILITY_TIMEOUT": "4"})
    try:
        ids, waiter, log = start_job(server, fleet, texts, tmp_path, "aof")
        crash_and_restart(server, "aof")
        state, answered = progress(server.client(), "aof")
        assert state == "running" and answered < N_ITEMS, "the crash should have hit the job mid-way"
        waiter.communicate(timeout=600)
        assert waiter.returncode == 0, log.read_text()[-2000:]
        # a message popped at the instant of the crash is lost to the broker, not to the store
        resent = sum(map(int, re.findall(r"stalled; resent (\d+) unanswered items", log.read_text())))
        until(lambda: drained(server.client()), "the queues and unacked to drain")
        figures = account(server, "aof", ids, tmp_path / "results.jsonl", fleet, 0, 0)
    finally:
        fleet.close()
        server.stop()
    with capsys.disabled():
        print(f"\nredis restart with AOF: answered before the restart {answered}, "
              f"lost by the broker and resent by `wait --resume-stalled` {resent}\n{figures.report()}")
    assert (figures.lost, figures.duplicated, figures.failed, figures.state) == (0, 0, 0, "done")


def test_without_persistence_the_cli_reports_the_job_gone(tiny_models, texts, tmp_path):
    server = start_redis(tmp_path)
    fleet = Fleet(server, tiny_models, tmp_path)
    try:
        _, waiter, log = start_job(server, fleet, texts, tmp_path, "vol")
        crash_and_restart(server, "vol")
        out, _ = waiter.communicate(timeout=600)
        err = log.read_text()
        status = run_tango("status", "vol", redis_url=server.url)
        results = run_tango("results", "vol", "--partial", redis_url=server.url)
        assert fleet.alive(1) and fleet.alive(2), "workers must ride out the restart"
    finally:
        fleet.close()
        server.stop()
    assert waiter.returncode == 4, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "records of job 'vol' are gone" in last and "without appendonly" in last and "Traceback" not in err
    assert "state     done" not in err and out == ""
    for done in (status, results):
        assert done.returncode != 0 and "no job 'vol'" in done.stderr and "without appendonly" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
