"""``tango demo`` end to end in its reduced mode: trains a MiniLM pair, labels the sample corpus, reuses the cache,
and labels the same corpus through a real cluster (redis-server and two ``tango worker`` processes)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import redis

from cli.main import cli, run
from common.testing.cluster import free_port

# the first test to use ``quick_demo`` trains the pair inside its time limit: on two CPU cores shared with
# other work that alone has taken over 600 s, the suite's default
TRAINS = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, dict, str]:
    """One embedded quick run (it trains the pair) shared by the tests below: its cache dir, figures, stderr."""
    cache = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert run(cli, args=["demo", "--quick", "--cache-dir", str(cache), "--json"]) == 0
    return cache, json.loads(out.getvalue()), err.getvalue()


@TRAINS
def test_quick_demo_runs_end_to_end_and_reuses_its_cache(quick_demo, capsys):
    cache, result, err = quick_demo
    assert "step 3/3" in err and "distilling the small tier" in err
    assert result["mode"] == "embedded" and result["job"] is None
    assert result["tier1_items"] + result["tier2_items"] == result["items"] == len(result["predictions"]) == 200
    choice = result["choice"]
    assert choice["rule"] in ("certified", "point estimate") and choice["items"] == 474
    if choice["rule"] == "certified":
        assert choice["bound"] <= choice["max_drop"] and choice["threshold"] == result["threshold"]
    assert result["speedup"] > 0 and result["big_seconds"] > 0
    for key in ("cascade_accuracy", "big_accuracy", "small_accuracy"):
        assert 0.0 <= result[key] <= 100.0
    assert result["big_accuracy"] > 60.0  # MiniLM-L6 fine-tuned on 120 reviews is far above chance

    assert run(cli, args=["demo", "--quick", "--cache-dir", str(cache)]) == 0
    captured = capsys.readouterr()
    assert "reusing the cached models" in captured.err
    assert "tier 1 (small, MiniLM 1 layer) decided" in captured.out and "speedup" in captured.out
    assert "guarantee" in captured.out  # the bound the threshold was chosen with, beside the measured drop


@TRAINS
def test_demo_through_the_cluster_labels_as_embedded_and_stops_its_workers(quick_demo, redis_url, capsys):
    """The same pair and threshold give the same labels through the cluster as in-process."""
    cache, embedded, _ = quick_demo
    args = ["demo", "--quick", "--cache-dir", str(cache), "--threshold", repr(embedded["threshold"]),
            "--redis-url", redis_url, "--json"]
    assert run(cli, args=args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "reusing the cached models" in captured.err
    assert "starting `tango worker tier1" in captured.err and "starting `tango worker tier2" in captured.err
    assert "stopping the tier-1 worker" in captured.err and "stopping the tier-2 worker" in captured.err
    assert result["mode"] == "cluster" and result["job"] in captured.err
    assert result["predictions"] == embedded["predictions"]
    for key in ("threshold", "items", "tier1_items", "tier2_items", "cascade_accuracy", "big_accuracy",
                "small_accuracy"):
        assert result[key] == embedded[key], key
    assert result["tier1_items"] > 0 and result["tier2_items"] > 0
    assert result["speedup"] > 0 and result["cascade_seconds"] > 0
    assert not _processes_using(cache)  # every worker the demo started is gone
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert not client.hgetall("tango:workers:tier1") and not client.hgetall("tango:workers:tier2")  # withdrawn


def test_unreachable_redis_is_one_line_and_exit_3_before_any_training(tmp_path, capsys):
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert run(cli, args=["demo", "--quick", "--redis-url", url, "--cache-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert f"cannot reach Redis at {url}" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def _processes_using(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (the workers' ``--model`` is under it; their
    prefork children keep it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # it ended while we looked
            continue
    return found
