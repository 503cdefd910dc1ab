"""`tango label --max-disagreement/--max-drop`: the threshold certified on the job's own seeded sample, the
sample's results tier 2's, the rest at that threshold; and every bad target refused in one line, nothing written."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cli.main import cli, run
from common.cascade import answers
from common.guarantee import QualityTarget, certify_target, model_cost_ratio
from common.labels import model_config
from common.sampling import calibration_sample

LABELS = ["negative", "positive"]
ITEMS = 600


@pytest.fixture(scope="module")
def corpus(glue_dir, tmp_path_factory):
    """SST-2 dev sentences with their gold labels: real text, so the tiny models' confidences spread."""
    rows = [line.split("\t") for line in (glue_dir / "sst2" / "dev.tsv").read_text().splitlines()[1:ITEMS + 1]]
    path = tmp_path_factory.mktemp("target") / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": text, "label": LABELS[int(gold)]}) + "\n"
                            for i, (text, gold) in enumerate(rows)))
    return path


def models(tiny_models) -> list[str]:
    return ["--small", str(tiny_models["small"]), "--big", str(tiny_models["big"])]


def label(tiny_models, path, out, *args: str) -> int:
    return run(cli, args=["label", str(path), *models(tiny_models), "-o", str(out), "--threads", "1", *args])


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def offline(tiny_models, corpus, target: QualityTarget, key: str):
    """The sample, its triples from each tier run alone, and what ``certify`` makes of them."""
    from common.ml.models import load_tier

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    size = target.plan(len(rows), model_cost_ratio(model_config(str(tiny_models["small"])),
                                                   model_config(str(tiny_models["big"])))).size
    sample = calibration_sample(len(rows), size, key)
    texts = [rows[i]["text"] for i in sample]
    identity = np.arange(2)
    small_ids, conf = answers(load_tier(str(tiny_models["small"])).probabilities(texts), identity)
    big_ids, _ = answers(load_tier(str(tiny_models["big"])).probabilities(texts), identity)
    gold = np.array([LABELS.index(rows[i]["label"]) for i in sample])
    guarantee = certify_target(conf, small_ids, big_ids, len(rows), target, 2,
                               gold if target.loss == "drop" else None)
    return sample, big_ids, guarantee


@pytest.mark.parametrize("option, loss", [("--max-disagreement", "disagreement"), ("--max-drop", "drop")])
def test_the_job_certifies_on_its_sample_and_the_sample_is_tier_two(tiny_models, corpus, tmp_path, capsys, option,
                                                                    loss):
    out = tmp_path / "out.jsonl"
    assert label(tiny_models, corpus, out, option, "0.2", "--seed", "job-7", "--audit", "0.5") == 0
    err = capsys.readouterr().err
    sample, big_ids, guarantee = offline(tiny_models, corpus, QualityTarget(0.2, loss=loss), "job-7")
    assert 0 < len(sample) < ITEMS and guarantee.threshold < 1.0
    assert f"calibration sample {len(sample)} of {ITEMS} items" in err and "(seed job-7)" in err
    assert f"threshold {guarantee.threshold:.10g}: " in err and f"at most {guarantee.bound:.4f}" in err
    assert f"expected tier-2 share {guarantee.tier2_share:.1%}" in err
    assert re.search(r"promise .* at most [0-9.]+ \(target 0.2, 90% confidence\); the audit measured "
                     r"disagreement [0-9.]+ \[[0-9.]+, [0-9.]+\] \(95% interval\)", err), err
    got = records(out)
    assert [r["id"] for r in got] == [f"s{i}" for i in range(ITEMS)]  # input order, one per item
    assert [(got[i]["tier"], got[i]["label"]) for i in sample] == [(2, LABELS[k]) for k in big_ids]
    rest = np.setdiff1d(np.arange(ITEMS), sample)
    conf = small_confidence(tiny_models, corpus, rest)
    assert [i for i in rest if got[i]["tier"] == 1] == rest[conf >= guarantee.threshold].tolist()
    assert 0 < (conf >= guarantee.threshold).sum() < len(rest)


def small_confidence(tiny_models, corpus, positions: np.ndarray) -> np.ndarray:
    from common.ml.models import load_tier

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    probs = load_tier(str(tiny_models["small"])).probabilities([rows[i]["text"] for i in positions])
    return probs.max(axis=1)


def test_the_same_seed_labels_alike_and_another_seed_draws_another_sample(tiny_models, corpus, tmp_path, capsys):
    first, again, other = (tmp_path / f"{name}.jsonl" for name in ("first", "again", "other"))
    for out, seed in ((first, "job-1"), (again, "job-1"), (other, "job-2")):
        assert label(tiny_models, corpus, out, "--max-disagreement", "0.2", "--seed", seed) == 0
    capsys.readouterr()
    assert first.read_bytes() == again.read_bytes()
    assert calibration_sample(ITEMS, 60, "job-1").tolist() != calibration_sample(ITEMS, 60, "job-2").tolist()
    assert [r["tier"] for r in records(first)] != [r["tier"] for r in records(other)]


def test_a_corpus_too_small_for_any_gain_runs_on_tier_two_or_is_refused(tiny_models, corpus, tmp_path, capsys):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[:40]))
    out = tmp_path / "out.jsonl"
    assert label(tiny_models, small, out, "--max-disagreement", "0.05") == 0
    err = capsys.readouterr().err
    assert "corpus too small for any gain" in err and "running every item on tier 2" in err
    assert {(r["tier"], r["model"]) for r in records(out)} == {(2, str(tiny_models["big"]))}
    refused = tmp_path / "refused.jsonl"
    assert label(tiny_models, small, refused, "--max-disagreement", "0.05", "--require-gain") == 2
    err = capsys.readouterr().err
    assert err.startswith("tango: error: --require-gain: corpus too small for any gain") and err.count("\n") == 1
    assert not refused.exists()


BAD = {  # options: what the one line says
    "D zero": (["--max-disagreement", "0"], "--max-disagreement must be a share between 0 and 1"),
    "D one": (["--max-disagreement", "1"], "--max-disagreement must be a share between 0 and 1"),
    "drop D above one": (["--max-drop", "1.5"], "--max-drop must be a share between 0 and 1"),
    "C one half": (["--max-disagreement", "0.2", "--confidence", "0.5"], "--confidence must be between 0.5 and 1"),
    "C one": (["--max-disagreement", "0.2", "--confidence", "1"], "--confidence must be between 0.5 and 1"),
    "N above the corpus": (["--max-disagreement", "0.2", "--calibration", "600"],
                           "--calibration must be between 1 and 599 (the corpus has 600 items), got 600"),
    "N too small for the bound": (["--max-disagreement", "0.2", "--calibration", "3"],
                                  "--calibration 3 is too small to certify 0.2 at 0.9 confidence: it needs at least"),
    "N not a number": (["--max-disagreement", "0.2", "--calibration", "lots"],
                       "--calibration must be a number of items or 'auto', got 'lots'"),
    "N zero": (["--max-disagreement", "0.2", "--calibration", "0"], "--calibration must be at least 1 item"),
    "with a threshold": (["--max-disagreement", "0.2", "--threshold", "0.8"],
                         "--max-disagreement and --threshold are exclusive"),
    "drop with a threshold": (["--max-drop", "0.2", "--threshold", "0.8"], "--max-drop and --threshold are exclusive"),
    "both targets": (["--max-disagreement", "0.2", "--max-drop", "0.2"],
                     "--max-disagreement and --max-drop are exclusive"),
    "C alone": (["--confidence", "0.95"], "--confidence needs a quality target"),
    "N alone": (["--calibration", "100"], "--calibration needs a quality target"),
    "require-gain alone": (["--require-gain"], "--require-gain needs a quality target"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_target_is_one_line_and_nothing_is_written(tiny_models, corpus, tmp_path, capsys, case):
    args, message = BAD[case]
    out = tmp_path / "out.jsonl"
    assert label(tiny_models, corpus, out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_max_drop_needs_gold_on_every_sample_item(tiny_models, corpus, tmp_path, capsys):
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    sample = calibration_sample(ITEMS, 60, "job-9")
    unlabelled = rows[int(sample[3])]
    del unlabelled["label"]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    assert label(tiny_models, path, out, "--max-drop", "0.2", "--calibration", "60", "--seed", "job-9") == 2
    err = capsys.readouterr().err
    line = int(sample[3]) + 1
    assert (f"--max-drop needs a gold label on every calibration item: line {line} (id '{unlabelled['id']}') "
            "has none") in err and err.count("\n") == 1
    assert not out.exists()
