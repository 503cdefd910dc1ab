"""One spelling for options: hyphens, with the old underscore spellings kept a while as hidden aliases."""
from __future__ import annotations

import re

import click
import pytest

import cli.options
from cli.evaluate import eval_command
from cli.main import cli as tango_group
from cli.main import run

# The research script's flags, spelled as the seed spells them (run_tango.py and `tango eval`).
SEED_FLAGS = {"--task_name", "--small_model_name_or_path", "--big_model_name_or_path", "--layer_num", "--device_small",
              "--device_big", "--per_device_eval_batch_size-small", "--per_device_eval_batch_size_small",
              "--per_device_eval_batch_size-big", "--per_device_eval_batch_size_big", "--confidence_threshold"}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(cli.options, "_WARNED", set())


def _commands() -> list[tuple[str, click.Command]]:
    return sorted(tango_group.commands.items())


@pytest.mark.parametrize("name, command", _commands(), ids=[name for name, _ in _commands()])
def test_help_shows_hyphenated_options_only(name, command, capsys):
    assert run(tango_group, args=[name, "--help"]) == 0
    shown = set(re.findall(r"--[A-Za-z0-9_-]+", capsys.readouterr().out))
    underscored = {flag for flag in shown if "_" in flag} - (SEED_FLAGS if name == "eval" else set())
    assert not underscored, f"tango {name} --help shows {sorted(underscored)}"


@pytest.mark.parametrize("old, new", [("--batch_size", "--batch-size"), ("--data_dir", "--data-dir"),
                                      ("--layer_num", "--layer-num"), ("--max_train_samples", "--max-train-samples")])
def test_an_old_spelling_is_read_as_the_new_one_and_warned_of_once(old, new, capsys):
    command = tango_group.commands["train"]
    args = [old, "7", old + "=8", "--", old]
    assert cli.options.hyphenate(command, args) == [new, "7", new + "=8", "--", old]
    assert cli.options.hyphenate(command, args) == [new, "7", new + "=8", "--", old]
    err = capsys.readouterr().err
    assert err.count(old) == 1 and new in err


def test_the_seed_flags_and_unknown_options_are_left_alone(capsys):
    args = ["--task_name", "sst2", "--confidence_threshold", "0.9", "--no_such_flag", "--data_dir", "d"]
    assert cli.options.hyphenate(eval_command, args) == ["--task_name", "sst2", "--confidence_threshold", "0.9",
                                                         "--no_such_flag", "--data-dir", "d"]
    assert "--data_dir" in capsys.readouterr().err


def test_an_alias_reaches_the_command_through_the_group(capsys):
    """End to end through ``tango``: the alias parses (then the missing model is the one-line error)."""
    code = run(tango_group, args=["calibrate", "--model", "/no/such/model", "--task", "sst2", "--max_items", "5",
                                  "--batch_size", "4"])
    err = capsys.readouterr().err
    assert "no such option" not in err and "--max_items is deprecated" in err
    assert code != 0


def test_run_tango_keeps_reading_data_dir(capsys):
    """run_tango.py calls ``run`` on the lone command: the aliases apply there too."""
    code = run(eval_command, prog_name="run_tango.py", args=["--task_name", "sst2", "--small_model_name_or_path",
                                                              "/no/s", "--big_model_name_or_path", "/no/b",
                                                              "--data_dir", "/no/glue"])
    err = capsys.readouterr().err
    assert "no such option" not in err and "--data_dir is deprecated" in err and code == 2
