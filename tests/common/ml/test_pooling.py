"""Mean pooling: the head reads the masked mean of the last hidden states, the choice is saved with the
checkpoint and every loader applies it, and ``auto`` follows how a sentence-transformers backbone pools."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from common.ml.models import load_pretrained, load_tier
from common.ml.pooling import POOLING_KEY, MeanPooled, resolve_pooling, with_pooling
from common.ml.training import TRAINING_FILE, TrainSettings, load_task_training_data, subsample, train_model


def _encode(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False)


def test_the_head_reads_the_masked_mean_of_the_last_hidden_states(tiny_models, tokenizer):
    model, tok = load_pretrained(str(tiny_models["small"]))
    pooled = with_pooling(model, "mean").eval()
    inputs = _encode(tok, ["a good film", "a long and rather tedious film with nothing in it"])
    with torch.no_grad():
        hidden = model.base_model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))
        got = pooled(**inputs).logits
    torch.testing.assert_close(got, expected)
    with torch.no_grad():
        first_token = model(**inputs).logits
    assert not torch.allclose(got, first_token)  # not what the plain model computes


def test_padding_does_not_move_an_items_logits(tiny_models):
    model, tok = load_pretrained(str(tiny_models["small"]))
    pooled = with_pooling(model, "mean").eval()
    with torch.no_grad():
        alone = pooled(**_encode(tok, ["a good film"])).logits
        padded = pooled(**_encode(tok, ["a good film", "a much longer sentence about a much longer film"])).logits
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=1e-5)


def test_a_saved_mean_pooled_model_loads_mean_pooled_everywhere(tiny_models, tmp_path):
    model, tok = load_pretrained(str(tiny_models["small"]))
    pooled = with_pooling(model, "mean")
    pooled.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())[POOLING_KEY] == "mean"
    reloaded, _ = load_pretrained(str(tmp_path / "m"))
    assert isinstance(reloaded, MeanPooled)
    tier = load_tier(str(tmp_path / "m"))
    texts = ["a good film", "a bad film", "neither here nor there"]
    with torch.no_grad():
        expected = pooled.eval()(**_encode(tok, texts)).logits.numpy()
    np.testing.assert_allclose(tier.logits(texts), expected, atol=1e-5)
    logits, hidden = tier.run(texts, pooled=True)  # the deferral head's features still come through
    assert hidden.shape == (3, tier.hidden_size)


def test_cls_unwraps_and_the_default_leaves_a_plain_model_plain(tiny_models):
    model, _ = load_pretrained(str(tiny_models["small"]))
    assert not isinstance(model, MeanPooled)
    wrapped = with_pooling(model, "mean")
    plain = with_pooling(wrapped, "cls")
    assert plain is model and getattr(plain.config, POOLING_KEY) == "cls"


def test_auto_follows_a_sentence_transformers_pooling_config(tiny_models, tmp_path):
    backbone = tmp_path / "st"
    shutil.copytree(tiny_models["small"], backbone)
    assert resolve_pooling("auto", str(backbone)) == "cls"
    (backbone / "1_Pooling").mkdir()
    (backbone / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert resolve_pooling("auto", str(backbone)) == "mean"
    assert resolve_pooling("cls", str(backbone)) == "cls"
    with pytest.raises(ConfigError, match="--pooling must be one of auto, cls, mean, got 'max'"):
        resolve_pooling("max", str(backbone))


def test_training_with_mean_pooling_records_it_and_cuts_layers(tiny_models, glue_dir, tmp_path):
    data = subsample(load_task_training_data("sst2", glue_dir), 32, seed=2)
    out = train_model(TrainSettings(model=str(tiny_models["big"]), output=str(tmp_path / "t"), layer_num=1,
                                    epochs=1, batch_size=8, learning_rate=1e-3, pooling="mean"), data, progress=False)
    record = json.loads((out / TRAINING_FILE).read_text())
    assert record["pooling"] == "mean" and record["settings"]["pooling"] == "mean"
    tier = load_tier(str(out))
    assert isinstance(tier.model, MeanPooled) and tier.num_layers == 1


def test_a_mean_pooled_model_copies_and_quantizes_like_a_plain_one(tiny_models, tmp_path):
    model, tok = load_pretrained(str(tiny_models["small"]))
    pooled = with_pooling(model, "mean").eval()
    inputs = _encode(tok, ["a good film", "a bad film"])
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(pooled)(**inputs).logits, pooled(**inputs).logits)
    pooled.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    int8, fp32 = load_tier(str(tmp_path / "m"), quantize=True), load_tier(str(tmp_path / "m"))
    texts = ["a good film", "a bad film", "neither here nor there"]
    with torch.no_grad():
        raw = int8.model(**_encode(tok, texts)).logits
    assert isinstance(int8.model, MeanPooled) and raw.shape == (3, 2)  # the head still reads the mean vector
    np.testing.assert_allclose(int8.logits(texts), fp32.logits(texts), atol=0.5)


def test_an_mpnet_style_head_gets_the_mean_where_it_reads_the_first_token():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, num_labels=2)
    model = MPNetForSequenceClassification(config).eval()
    pooled = with_pooling(model, "mean")
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        head = model.classifier
        expected = head.out_proj(torch.tanh(head.dense(mean)))
        torch.testing.assert_close(pooled(input_ids=ids, attention_mask=mask).logits, expected)
