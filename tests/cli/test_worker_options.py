"""`tango worker`'s throughput options: what it refuses before starting anything, and its defaults."""
from __future__ import annotations

import pytest

from cli.main import cli, run
from cli.worker import available_cores, choose_pool, default_threads
from common.errors import ConfigError


@pytest.mark.parametrize("args, message", [
    (["tier1", "--max-wait-ms", "20"], "tier 1's chunks are batches already"),
    (["tier2", "-c", "2", "--metrics-port", "9100"], "one process's metrics"),
    (["tier2", "--max-wait-ms", "20", "-P", "prefork"], "needs the threads pool"),
])
def test_unworkable_combinations_fail_with_one_line(args, message, tiny_models, capsys):
    assert run(cli, args=["worker", *args, "--model", str(tiny_models["big"])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_batching_runs_on_threads_and_threads_share_the_cores():
    assert choose_pool(None, "cpu", 20) == "threads"
    assert choose_pool(None, "cpu", 0) == "prefork" and choose_pool(None, "cuda", 0) == "solo"
    cores = available_cores()
    assert default_threads(1) == cores and default_threads(cores * 2) == 1
    assert default_threads(2) * 2 <= max(cores, 2)
    with pytest.raises(ConfigError):
        choose_pool("solo", "cpu", 20)


def test_label_quantize_labels_every_item(tiny_models, tmp_path):
    import json

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a gripping , funny film\ndull and far too long\nthe cast is fine\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert run(cli, args=["label", str(corpus), "--small", str(tiny_models["small"]), "--big",
                          str(tiny_models["big"]), "--quantize", "-o", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and {r["label"] for r in records} <= {"negative", "positive"}


@pytest.mark.parametrize("model", ["/no/such/dir", "./no-such-model", "models/v1/missing"])
def test_a_model_directory_that_does_not_exist_is_named_in_one_line(model, capsys):
    assert run(cli, args=["worker", "tier1", "--model", model]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"model directory {model} does not exist" in err and "repo" not in err


def test_label_names_a_model_directory_that_does_not_exist(tmp_path, capsys):
    corpus = tmp_path / "in.txt"
    corpus.write_text("a film\n", encoding="utf-8")
    assert run(cli, args=["label", str(corpus), "--small", "/no/such/small", "--big", "/no/such/big"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model directory /no/such/" in err and "repo" not in err
