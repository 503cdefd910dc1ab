"""``tango train``, ``tango sweep`` and ``tango calibrate`` as a user runs them (in-process, same error path)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cli.main import cli, run
from common.ml.models import load_tier

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tango(*args) -> int:
    return run(cli, args=[str(a) for a in args])


@pytest.fixture
def labelled_jsonl(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"text": t, "label": l} for t, l in [("a lovely film", "pos"), ("dull and slow", "neg"),
                                                  ("great fun", "pos"), ("a waste of time", "neg")] * 8]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_from_a_task_with_layer_cut_and_dev_metric(tiny_models, glue_dir, tmp_path, capsys):
    out = tmp_path / "model"
    code = tango("train", "--model", tiny_models["big"], "--task", "sst2", "--data-dir", glue_dir, "--output", out,
                 "--layer-num", "1", "--max-train-samples", "40", "--batch-size", "8")
    assert code == 0, capsys.readouterr().err
    tier = load_tier(str(out))
    assert tier.num_layers == 1 and tier.labels == ["negative", "positive"]
    dev = json.loads(capsys.readouterr().out.split("dev ", 1)[1])
    assert 0.0 <= dev["accuracy"] <= 1.0


def test_train_from_a_corpus_with_a_teacher(tiny_models, labelled_jsonl, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert tango("train", "--model", tiny_models["small"], "--train-file", labelled_jsonl, "--output", teacher) == 0
    assert load_tier(str(teacher)).labels == ["neg", "pos"]
    student = tmp_path / "student"
    code = tango("train", "--model", tiny_models["big"], "--train-file", labelled_jsonl, "--output", student,
                 "--teacher", teacher, "--layer-num", "2", "--cache-dir", tmp_path / "cache")
    assert code == 0, capsys.readouterr().err
    assert load_tier(str(student)).num_layers == 2 and list((tmp_path / "cache").glob("*.npy"))


def test_train_augments_the_distillation_set_with_texts_the_teacher_labels(tiny_models, labelled_jsonl, tmp_path,
                                                                          capsys):
    teacher = tmp_path / "teacher"
    assert tango("train", "--model", tiny_models["small"], "--train-file", labelled_jsonl, "--output", teacher) == 0
    student = tmp_path / "student"
    code = tango("train", "--model", tiny_models["big"], "--train-file", labelled_jsonl, "--output", student,
                 "--teacher", teacher, "--augment", "10", "--cache-dir", tmp_path / "cache")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "on 42 examples (10 of them made by --augment)" in err
    [logits] = (tmp_path / "cache").glob("*.npy")
    assert np.load(logits).shape == (42, 2)
    assert json.loads((student / "tango_training.json").read_text())["examples"] == 42


@pytest.mark.slow
def test_train_with_a_deferral_holdout_reports_the_head_or_why_not(tiny_models, glue_dir, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert tango("train", "--model", tiny_models["big"], "--task", "sst2", "--data-dir", glue_dir, "--output",
                 teacher, "--max-train-samples", "200", "--batch-size", "16") == 0
    capsys.readouterr()
    student = tmp_path / "student"
    code = tango("train", "--model", tiny_models["big"], "--task", "sst2", "--data-dir", glue_dir, "--output", student,
                 "--teacher", teacher, "--layer-num", "1", "--max-train-samples", "200", "--deferral-holdout", "0.3",
                 "--freeze-embeddings", "--batch-size", "16")
    assert code == 0
    out = capsys.readouterr()
    head = load_tier(str(student)).deferral
    if head is None:
        assert "no deferral head" in out.err
    else:
        assert "deferral head: fitted on 60 held-out items" in out.out


@pytest.mark.slow
def test_a_hub_id_of_a_packaged_backbone_trains_offline_and_says_so(glue_dir, tmp_path, capsys):
    out = tmp_path / "minilm"
    code = tango("train", "--model", "sentence-transformers/all-MiniLM-L6-v2", "--task", "sst2", "--data-dir",
                 glue_dir, "--output", out, "--layer-num", "1", "--max-train-samples", "16", "--epochs", "0.5",
                 "--freeze-embeddings")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "using the packaged copy" in err and load_tier(str(out)).num_layers == 1


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs"),
    (["--layer-num", "9"], "--layer-num"),
    (["--task", "sst2"], "exactly one of --task"),
    (["--augment", "5"], "--augment needs --teacher"),
])
def test_bad_options_fail_in_one_line(tiny_models, labelled_jsonl, tmp_path, capsys, args, message):
    code = tango("train", "--model", tiny_models["small"], "--train-file", labelled_jsonl, "--output",
                 tmp_path / "m", *args)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tango: error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_unlabelled_record_is_named(tiny_models, tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": "no label"}\n')
    assert tango("train", "--model", tiny_models["small"], "--train-file", path, "--output", tmp_path / "m") == 2
    assert "line 2" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_writes_csv_png_and_recommends(tiny_models, glue_dir, tmp_path, capsys):
    # random tiny models certify nothing within a small budget (tests/cli/test_sweep.py): allow a large one
    code = tango("sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--task", "sst2",
                 "--data-dir", glue_dir, "--output-dir", tmp_path, "--max-drop", "100")
    out = capsys.readouterr().out
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("recommended threshold"))
    # measured per-item costs decide whether any threshold beats the big model; on a loaded machine the
    # tiny pair's costs can say none does, and the line then says why
    assert ("speedup" in line and line.rstrip().endswith("x")) or "none (" in line
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "sweep.csv").read_text().startswith("threshold,accuracy,tier2_fraction,speedup")


@pytest.mark.slow
def test_sweep_can_run_the_small_model_int8(tiny_models, glue_dir, tmp_path, capsys, monkeypatch):
    import common.ml.models

    loaded = []
    real = common.ml.models.load_tier
    monkeypatch.setattr(common.ml.models, "load_tier", lambda name, **kw: loaded.append((name, kw)) or real(name, **kw))
    assert tango("sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--task", "sst2",
                 "--data-dir", glue_dir, "--output-dir", tmp_path, "--json", "--quantize-small") == 0
    report = json.loads(capsys.readouterr().out)
    assert {str(name): kw.get("quantize", False) for name, kw in loaded} == {
        str(tiny_models["small"]): True, str(tiny_models["big"]): False}  # only tier 1 is quantized
    assert len(report["rows"]) > 1


@pytest.mark.slow
def test_sweep_json_has_the_whole_table(tiny_models, glue_dir, tmp_path, capsys):
    assert tango("sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--task", "sst2",
                 "--data-dir", glue_dir, "--output-dir", tmp_path, "--json", "--max-drop", "100") == 0
    report = json.loads(capsys.readouterr().out)
    best = report["recommended"]
    assert report["rows"][-1]["threshold"] == 1.0
    assert (best is not None and best["bound"] <= 100) or (best is None and report["reason"])
    assert all(row["bound"] >= row["loss"] - 1e-9 for row in report["rows"])


def test_sweep_rejects_an_unknown_metric(tiny_models, glue_dir, tmp_path, capsys):
    assert tango("sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--task", "sst2",
                 "--data-dir", glue_dir, "--metric", "f1", "--output-dir", tmp_path) == 2
    assert "--metric" in capsys.readouterr().err


def test_calibrate_saves_a_temperature_the_sweep_then_uses(tiny_models, glue_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_models["small"], tmp_path / "small")
    assert tango("calibrate", "--model", model, "--task", "sst2", "--data-dir", glue_dir, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["written"] and load_tier(str(model)).temperature == pytest.approx(result["temperature"])
    assert result["nll_after"] <= result["nll_before"]


def test_calibrate_dry_run_writes_nothing(tiny_models, glue_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_models["small"], tmp_path / "small")
    assert tango("calibrate", "--model", model, "--task", "sst2", "--data-dir", glue_dir, "--dry-run",
                 "--max-items", "100") == 0
    assert "not written" in capsys.readouterr().out and load_tier(str(model)).temperature == 1.0
