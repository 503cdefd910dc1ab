"""The research script's interface, run exactly as users run it: a subprocess (the bad-input cases past the
first call the same entry point in-process)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli.evaluate import eval_command
from cli.main import run
from tests.conftest import ROOT


def run_tango(*args: str, script: tuple[str, ...] = ("run_tango.py",)) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *script, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def seed_args(task, small, big, *extra):
    return ["--task_name", task, "--small_model_name_or_path", small, "--big_model_name_or_path", big, *extra]


@pytest.mark.slow
def test_sst2_with_the_seed_flags(tiny_models, glue_dir):
    result = run_tango(*seed_args("sst2", tiny_models["small"], tiny_models["big"],
                                  "--data-dir", glue_dir, "--confidence_threshold", "0.6", "--device_small", "cpu",
                                  "--device_big", "-1", "--per_device_eval_batch_size-small", "16",
                                  "--per_device_eval_batch_size-big", "8", "--compare"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "872 items" in out and "accuracy" in out and "items/s" in out
    assert "tier 2:" in out and "speedup" in out and "big alone" in out


@pytest.mark.slow
def test_rte_pair_task_with_string_labels_as_json(tiny_models, glue_dir):
    result = run_tango(*seed_args("rte", tiny_models["rte_small"], tiny_models["rte_big"], "--data-dir", glue_dir,
                                  "--layer_num", "1", "--confidence_threshold", "0.7", "--compare", "--json"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    cascade = report["cascade"]
    assert report["items"] == 139 and report["labels"] == ["entailment", "not_entailment"]
    assert cascade["tier1_items"] + cascade["tier2_items"] == 139
    assert 0.0 <= cascade["metrics"]["accuracy"] <= 1.0
    assert report["speedup"] > 0 and report["big_alone"]["tier2_fraction"] == 1.0


@pytest.mark.slow
def test_tango_eval_threshold_one_equals_big_alone(tiny_models, glue_dir):
    result = run_tango(*seed_args("sst2", tiny_models["small"], tiny_models["generic_big"], "--data-dir", glue_dir,
                                  "--confidence_threshold", "1.0", "--compare", "--json"), script=("-m", "cli.main", "eval"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cascade"]["tier2_fraction"] == 1.0
    assert report["cascade"]["metrics"] == report["big_alone"]["metrics"]
    assert "by index" in result.stderr  # generic LABEL_n names were matched, and it said so


def one_line_error(returncode: int, stdout: str, stderr: str, message: str) -> None:
    assert returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_tango.py: error:") and message in lines[0], stderr
    assert stdout == ""


@pytest.mark.slow
def test_bad_input_from_the_script_is_one_line_and_exit_2(tiny_models, glue_dir):
    result = run_tango(*seed_args("sst2", tiny_models["small"], tiny_models["big"], "--data-dir", glue_dir,
                                  "--confidence_threshold", "0.3"))
    one_line_error(result.returncode, result.stdout, result.stderr,
                   "--confidence_threshold must be between 0.5 and 1.0")


@pytest.mark.parametrize("case, extra, message", [
    ("missing file", ["--validation-file", "/nonexistent/dev.tsv"], "no such file"),
    ("unknown task", ["--task_name", "imdb"], "unknown task 'imdb'"),
    ("layer_num", ["--layer_num", "9"], "--layer_num on eval) must be between 1 and 1"),
    ("labels", ["--big_model_name_or_path", "{other_names}"], "labels differ"),
    ("label count", ["--big_model_name_or_path", "{other}"], "different label counts"),
    ("missing model", ["--small_model_name_or_path", "/nonexistent/model"], "model directory /nonexistent/model does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_models, glue_dir, capsys, case, extra, message):
    """In-process, as the script's ``__main__`` calls it: a Python start per case would cost seconds each."""
    args = seed_args("sst2", tiny_models["small"], tiny_models["big"], "--data-dir", glue_dir)
    args += [a.format(**{k: str(v) for k, v in tiny_models.items()}) for a in extra]
    code = run(eval_command, prog_name="run_tango.py", args=[str(a) for a in args])
    captured = capsys.readouterr()
    one_line_error(code, captured.out, captured.err, message)


@pytest.mark.slow
def test_missing_column_is_one_line(tiny_models, tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text('{"text": "a", "label": 0}\n')
    result = run_tango(*seed_args("sst2", tiny_models["small"], tiny_models["big"], "--validation-file", path))
    assert result.returncode == 2 and "needs a column 'sentence'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_lists_the_seed_flags():
    result = run_tango("--help")
    for flag in ("--task_name", "--small_model_name_or_path", "--big_model_name_or_path", "--layer_num",
                 "--device_small", "--device_big", "--per_device_eval_batch_size-small",
                 "--per_device_eval_batch_size-big", "--confidence_threshold", "--compare", "--json"):
        assert flag in result.stdout
