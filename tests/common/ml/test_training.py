"""Training a tier: weights move, labels are saved, layers are cut, distillation runs and caches."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from common.errors import ConfigError, DataError
from common.ml.models import load_pretrained, load_tier
from common.ml.training import (TRAINING_FILE, TrainingData, TrainSettings, label_ids_for, length_grouped_batches,
                             load_task_training_data, subsample, teacher_logits, train_model)


@pytest.fixture(scope="module")
def sst2_sample(glue_dir) -> TrainingData:
    return subsample(load_task_training_data("sst2", glue_dir), 48, seed=1)


def _settings(backbone, out, **overrides) -> TrainSettings:
    base = dict(model=str(backbone), output=str(out), epochs=2, batch_size=8, learning_rate=1e-3, seed=0)
    return TrainSettings(**{**base, **overrides})


def _weights(model_dir) -> dict[str, torch.Tensor]:
    model, _ = load_pretrained(str(model_dir))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_changes_weights_and_saves_label_names(tiny_models, sst2_sample, tmp_path):
    out = train_model(_settings(tiny_models["big"], tmp_path / "trained"), sst2_sample, progress=False)
    before, after = _weights(tiny_models["big"]), _weights(out)
    moved = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert any("classifier" in k for k in moved) and any("encoder" in k for k in moved)
    tier = load_tier(str(out))
    assert tier.labels == ["negative", "positive"]
    assert (out / TRAINING_FILE).is_file() and not (tmp_path / "trained.partial").exists()


def test_new_label_names_replace_the_backbone_head(tiny_models, tmp_path):
    data = TrainingData(["good", "bad", "fine", "awful"] * 4, None, np.array([0, 1, 2, 1] * 4), ["a", "b", "c"])
    out = train_model(_settings(tiny_models["small"], tmp_path / "three", epochs=1), data, progress=False)
    assert load_tier(str(out)).labels == ["a", "b", "c"]


def test_layer_num_keeps_that_many_layers(tiny_models, sst2_sample, tmp_path):
    out = train_model(_settings(tiny_models["big"], tmp_path / "cut", layer_num=1, epochs=1), sst2_sample,
                      progress=False)
    assert load_tier(str(out)).num_layers == 1


def test_distillation_runs_and_reuses_cached_teacher_logits(tiny_models, sst2_sample, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    soft = teacher_logits(str(tiny_models["big"]), sst2_sample, cache_dir=cache, progress=False)
    assert soft.shape == (len(sst2_sample), 2) and len(list(cache.glob("*.npy"))) == 1
    monkeypatch.setattr("common.ml.models.load_tier", lambda *a, **k: pytest.fail("teacher ran again"))
    again = teacher_logits(str(tiny_models["big"]), sst2_sample, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(soft, again)
    out = train_model(_settings(tiny_models["big"], tmp_path / "student", layer_num=2, epochs=1),
                      sst2_sample, teacher_logits=soft, progress=False)
    assert load_tier(str(out)).num_layers == 2


def test_teacher_with_other_labels_is_refused(tiny_models, sst2_sample):
    with pytest.raises(ConfigError, match="--teacher"):
        teacher_logits(str(tiny_models["other_names"]), sst2_sample, progress=False)


def test_teacher_logits_of_the_wrong_shape_are_refused(tiny_models, sst2_sample, tmp_path):
    with pytest.raises(ConfigError, match="teacher logits"):
        train_model(_settings(tiny_models["small"], tmp_path / "x"), sst2_sample,
                    teacher_logits=np.zeros((3, 2), dtype=np.float32), progress=False)


def test_label_ids_by_index_and_by_name():
    ids, names = label_ids_for(["0", "positive", "1", "NEGATIVE"], ["negative", "positive"])
    assert ids.tolist() == [0, 1, 1, 0] and names == ["negative", "positive"]
    ids, names = label_ids_for(["pos", "neg", "pos"])
    assert names == ["neg", "pos"] and ids.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="record 2"):
        label_ids_for(["0", "maybe"], ["negative", "positive"])
    with pytest.raises(DataError, match="two distinct labels"):
        label_ids_for(["x", "x"])


def test_length_grouped_batches_cover_every_item_once():
    lengths = [random.Random(3).randint(1, 60) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 16, random.Random(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000)) and max(len(b) for b in batches) == 16


def test_bad_settings_name_the_option(tiny_models, sst2_sample, tmp_path):
    with pytest.raises(ConfigError, match="--epochs"):
        train_model(_settings(tiny_models["small"], tmp_path / "x", epochs=0), sst2_sample, progress=False)


def test_missing_train_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="train.tsv"):
        load_task_training_data("sst2", tmp_path)


def test_frozen_embeddings_stay_as_pretrained_while_the_rest_learns(tiny_models, sst2_sample, tmp_path):
    out = train_model(_settings(tiny_models["big"], tmp_path / "frozen", epochs=1, freeze_embeddings=True),
                      sst2_sample, progress=False)
    before, after = _weights(tiny_models["big"]), _weights(out)
    word = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert torch.equal(before[word], after[word])
    assert any(not torch.equal(before[k], after[k]) for k in before if "encoder" in k)
