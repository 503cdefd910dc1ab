"""``tango sweep`` as a user runs it (in-process, same error path): the certified recommendation, the
budget mode, the unlabelled sample, the folds and the warning when calibration and sweep share items."""
from __future__ import annotations

import json
import shutil

import pytest

from cli.main import cli, run

pytestmark = pytest.mark.slow  # each runs both models over SST-2 dev; tests/common/ml/test_sweep.py is fast

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tango(*args) -> int:
    return run(cli, args=[str(a) for a in args])


@pytest.fixture
def sst2(tiny_models, glue_dir, tmp_path):
    """The common arguments: the tiny pair on SST-2 dev (872 items), outputs in tmp_path."""
    return ["sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--task", "sst2",
            "--data-dir", glue_dir, "--output-dir", tmp_path]


@pytest.fixture
def corpus(glue_dir, tmp_path):
    """300 unlabelled SST-2 sentences as a submit-style JSONL corpus."""
    lines = (glue_dir / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:301]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": line.split("\t")[0]}) + "\n" for line in lines))
    return path


def test_two_random_tiny_models_get_no_threshold_and_say_why(sst2, tmp_path, capsys):
    assert tango(*sst2) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("recommended threshold"))
    assert line.startswith("recommended threshold: none (no threshold beats the big model alone within 0.5 "
                           "points at 90% confidence on these 872 items")
    assert "(bound " in out  # the milestone rows show each threshold's bound
    header = (tmp_path / "sweep.csv").read_text().splitlines()[0]
    assert header == "threshold,accuracy,tier2_fraction,speedup,loss,bound"
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert tango(*sst2, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recommended"] is None and report["reason"].startswith("no threshold beats")
    assert report["rule"] == "guarantee" and report["confidence"] == 0.9 and report["items"] == 872
    assert all(row["bound"] >= row["loss"] - 1e-9 for row in report["rows"]) and report["rows"][-1]["threshold"] == 1.0


def test_budget_mode_respects_the_tier2_share(sst2, capsys):
    assert tango(*sst2, "--max-tier2", "0.3", "--confidence", "0.95", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    best = report["recommended"]
    assert report["rule"] == "budget" and best["tier2_fraction"] <= 0.3
    assert best["loss"] == min(r["loss"] for r in report["rows"] if r["tier2_fraction"] <= 0.3)
    assert best["bound"] >= best["loss"] and report["confidence"] == 0.95


def test_unlabelled_sample_reports_agreement_and_folds(tiny_models, corpus, tmp_path, capsys):
    args = ["sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--unlabelled", corpus,
            "--sample", 120, "--seed", 1, "--folds", 3, "--max-drop", 100, "--output-dir", tmp_path]
    assert tango(*args) == 0
    out = capsys.readouterr().out
    assert "agreement with the big model" in out and "(120 items)" in out
    assert [l.split(":")[0].strip() for l in out.splitlines() if l.strip().startswith("fold ")] == [
        "fold 1", "fold 2", "fold 3"]
    assert "folds: mean drop" in out and "worst drop" in out
    assert tango(*args, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 120 and report["loss_name"] == "disagreement" and report["big_metric"] == 100.0
    assert sum(f["items"] for f in report["folds"]["folds"]) == 120
    assert report["folds"]["worst_drop"] == max(f["drop"] for f in report["folds"]["folds"])


def test_unlabelled_refuses_gold_options_in_one_line(tiny_models, corpus, tmp_path, capsys):
    assert tango("sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--unlabelled", corpus,
                 "--loss", "drop", "--output-dir", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--unlabelled" in err[0] and "--loss drop" in err[0]


def test_sweeping_on_the_calibration_items_is_flagged(tiny_models, glue_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_models["small"], tmp_path / "small")
    assert tango("calibrate", "--model", model, "--task", "sst2", "--data-dir", glue_dir, "--max-items", 100) == 0
    capsys.readouterr()
    args = ["sweep", "--small", model, "--big", tiny_models["big"], "--task", "sst2", "--data-dir", glue_dir,
            "--output-dir", tmp_path / "out", "--max-tier2", "0.5", "--folds", 2]
    assert tango(*args) == 0
    captured = capsys.readouterr()
    warnings = [l for l in captured.err.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "fitted on 100 of these 872 items" in warnings[0]
    assert "[optimistic: the calibration saw 100 of these items]" in captured.out
    line = next(l for l in captured.out.splitlines() if l.startswith("recommended threshold"))
    assert "optimistic" in line
    (model / "tango_calibration.json").write_text('{"temperature": 1.0}\n')  # an older calibration file
    assert tango(*args) == 0
    captured = capsys.readouterr()
    assert "warning:" not in captured.err and "optimistic" not in captured.out


def test_unlabelled_sweep_and_a_job_on_the_same_sample_certify_the_same_threshold(tiny_models, corpus, tmp_path,
                                                                                 capsys):
    args = ["sweep", "--small", tiny_models["small"], "--big", tiny_models["big"], "--unlabelled", corpus,
            "--sample", 80, "--seed", "job-3", "--max-drop", 20, "--output-dir", tmp_path]
    assert tango(*args, "--json") == 0
    job = json.loads(capsys.readouterr().out)["job_guarantee"]
    assert job["sample_size"] == 80 and job["total"] == 300 and job["seed"] == "job-3" and job["max_loss"] == 0.2
    assert job["threshold"] < 1.0 and job["bound"] <= 0.2
    assert tango(*args) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("job guarantee"))
    assert "--max-disagreement 0.2 --calibration 80 --seed job-3" in line
    out = tmp_path / "labels.jsonl"
    assert tango("label", corpus, "--small", tiny_models["small"], "--big", tiny_models["big"], "-o", out,
                 "--max-disagreement", "0.2", "--calibration", "80", "--seed", "job-3") == 0
    labelled = capsys.readouterr().err
    assert f"threshold {job['threshold']:.10g}: disagreement with the big model on the rest at most " \
           f"{job['bound']:.4f}" in labelled
    assert f"{job['observed']} of 80 sample items over it (up to {job['allowed']} allowed)" in labelled
