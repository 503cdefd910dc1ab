"""Tiers on ONNX Runtime: the same probabilities as torch (pairs, cut layers, mean pooling, the deferral
head's features), the export made once and cached beside the model, and made again when the model changes."""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from common.errors import ModelLoadError
from common.ml.models import load_pretrained, load_tier
from common.ml.onnx_backend import OnnxClassifier, export_path
from common.ml.pooling import with_pooling

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

TEXTS = ["a good film", "a bad film", "neither here nor there, and much too long for what it says",
         "it is not the worst thing I have seen this year", "wonderful"]


@pytest.fixture()
def small(tiny_models, tmp_path):
    """A copy, so the export cached beside it belongs to this test alone."""
    return shutil.copytree(tiny_models["small"], tmp_path / "small")


def test_onnx_gives_torchs_probabilities_and_labels(small):
    torch_tier, onnx_tier = load_tier(str(small)), load_tier(str(small), backend="onnx")
    assert isinstance(onnx_tier.model, OnnxClassifier) and onnx_tier.labels == torch_tier.labels
    expected, got = torch_tier.probabilities(TEXTS), onnx_tier.probabilities(TEXTS)
    assert np.abs(expected - got).max() <= 1e-4
    assert (expected.argmax(1) == got.argmax(1)).all()


def test_sentence_pairs_and_a_cut_model_match_too(tiny_models, tmp_path):
    big = shutil.copytree(tiny_models["rte_big"], tmp_path / "rte_big")
    firsts, seconds = TEXTS, list(reversed(TEXTS))
    torch_tier = load_tier(str(big), layer_num=1)
    onnx_tier = load_tier(str(big), layer_num=1, backend="onnx")
    assert onnx_tier.num_layers == torch_tier.num_layers == 1
    assert np.abs(torch_tier.probabilities(firsts, seconds) - onnx_tier.probabilities(firsts, seconds)).max() <= 1e-4
    assert export_path(str(big), 1, False).is_file() and not export_path(str(big), None, False).exists()


def test_a_mean_pooled_model_and_its_pooled_states_match(small):
    model, tokenizer = load_pretrained(str(small))
    with_pooling(model, "mean").save_pretrained(small)
    torch_tier, onnx_tier = load_tier(str(small)), load_tier(str(small), backend="onnx")
    (torch_logits, torch_states), (onnx_logits, onnx_states) = (tier.run(TEXTS, pooled=True)
                                                                for tier in (torch_tier, onnx_tier))
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    np.testing.assert_allclose(onnx_states, torch_states, atol=1e-4)


def test_the_export_is_made_once_and_again_when_the_model_changes(small):
    load_tier(str(small), backend="onnx")
    path = export_path(str(small), None, False)
    made = path.stat().st_mtime
    load_tier(str(small), backend="onnx")
    assert path.stat().st_mtime == made  # reused
    later = time.time() + 5
    os.utime(small / "config.json", (later, later))
    load_tier(str(small), backend="onnx")
    assert path.stat().st_mtime > made  # the model is newer than its export: exported again


def test_the_int8_variant_is_its_own_file_and_labels_items(small):
    tier = load_tier(str(small), backend="onnx", quantize=True)
    probs = tier.probabilities(TEXTS)
    assert export_path(str(small), None, True).is_file() and export_path(str(small), None, False).is_file()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_what_onnx_does_not_run_is_refused_in_one_line(small):
    with pytest.raises(ModelLoadError, match="--backend onnx runs on the CPU"):
        load_tier(str(small), backend="onnx", device="cuda:0")
    with pytest.raises(ModelLoadError, match="--backend must be torch or onnx, got 'tensorrt'"):
        load_tier(str(small), backend="tensorrt")


def test_a_worker_told_onnx_in_its_environment_serves_on_onnx(small):
    from common.ml.models import load_for_worker
    from common.queue.config import WorkerSettings

    settings = WorkerSettings(tier=1, model=str(small), backend="onnx", threads=1)
    assert WorkerSettings.from_env(1, settings.to_env()).backend == "onnx"
    assert isinstance(load_for_worker(WorkerSettings.from_env(1, settings.to_env())).model, OnnxClassifier)


def test_label_on_onnx_writes_torchs_labels(tiny_models, small, tmp_path):
    import json

    from cli.main import cli, run

    big = shutil.copytree(tiny_models["big"], tmp_path / "big")
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(TEXTS * 4)))
    outputs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.jsonl"
        assert run(cli, args=["label", str(corpus), "--small", str(small), "--big", str(big),
                              "--threshold", "0.6", "--backend", backend, "--audit", "0", "-o", str(out)]) == 0
        outputs[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["label"], r["tier"]) for r in outputs["onnx"]] == [(r["label"], r["tier"]) for r in outputs["torch"]]
    np.testing.assert_allclose([r["score"] for r in outputs["onnx"]], [r["score"] for r in outputs["torch"]], atol=1e-4)
