import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.ml.devices import resolve_device
from common.errors import ConfigError, ModelLoadError
from common.ml.models import CALIBRATION_FILE, import_model_code, load_tier, write_temperature

TEXTS = ["a good film", "bad", "the plot is dull and the acting is worse", "great", "fine " * 30, "ok"]


def test_batching_and_length_sorting_keep_input_order(tiny_models):
    one = load_tier(str(tiny_models["big"]), batch_size=1).logits(TEXTS)
    many = load_tier(str(tiny_models["big"]), batch_size=4).logits(TEXTS)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_pairs_change_the_input(tiny_models):
    model = load_tier(str(tiny_models["rte_small"]))
    alone = model.logits(["a man walks"])
    paired = model.logits(["a man walks"], ["a woman runs"])
    assert not np.allclose(alone, paired)


def test_layer_num_keeps_the_first_layers(tiny_models):
    full = load_tier(str(tiny_models["big"]))
    cut = load_tier(str(tiny_models["big"]), layer_num=1)
    assert full.num_layers == 3 and cut.num_layers == 1
    assert cut.model.config.num_hidden_layers == 1
    first_full = full.model.base_model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(first_full, cut.model.base_model.encoder.layer[0].attention.self.query.weight)


@pytest.mark.parametrize("n", [0, 4, -1])
def test_layer_num_out_of_range(tiny_models, n):
    with pytest.raises(ModelLoadError, match="between 1 and 3"):
        load_tier(str(tiny_models["big"]), layer_num=n)


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model directory .*nope does not exist"):
        load_tier(str(tmp_path / "nope"))


def test_calibration_temperature_is_applied(tiny_models, tmp_path):
    import shutil

    model_dir = tmp_path / "calibrated"
    shutil.copytree(tiny_models["small"], model_dir)
    plain = load_tier(str(model_dir)).probabilities(TEXTS)
    write_temperature(model_dir, 3.0)
    hot = load_tier(str(model_dir))
    assert hot.temperature == 3.0
    assert (hot.probabilities(TEXTS).max(axis=1) < plain.max(axis=1)).all()
    (model_dir / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(ModelLoadError, match="positive"):
        load_tier(str(model_dir))


@pytest.mark.parametrize("spec, expected", [("cpu", "cpu"), (-1, "cpu"), ("-1", "cpu"), (None, "cpu")])
def test_devices(spec, expected):
    assert resolve_device(spec).type == expected


@pytest.mark.parametrize("spec", ["cuda:7", "7", "tpu", "mps"])
def test_unavailable_devices_fail_early(spec):
    if spec == "mps" and resolve_device.__module__ and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ConfigError):
        resolve_device(spec)


def test_a_quantized_model_loads_and_classifies_like_the_float_one(tiny_models):
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    from tests.workers import TEXTS

    plain = load_tier(str(tiny_models["big"]))
    quantized = load_tier(str(tiny_models["big"]), quantize=True)
    assert any(isinstance(m, QuantizedLinear) for m in quantized.model.modules())
    assert quantized.labels == plain.labels
    probs, reference = quantized.probabilities(TEXTS), plain.probabilities(TEXTS)
    assert probs.shape == reference.shape and np.allclose(probs.sum(axis=1), 1.0)
    # this random model's wide init amplifies int8 noise (up to ~0.13 here); real checkpoints differ far less
    assert np.abs(probs - reference).mean() < 0.1


def test_half_precision_is_refused_on_the_cpu(tiny_models):
    with pytest.raises(ModelLoadError, match="GPU"):
        load_tier(str(tiny_models["big"]), precision="bf16")
    with pytest.raises(ModelLoadError, match="precision"):
        load_tier(str(tiny_models["big"]), precision="fp8")


def test_import_model_code_reads_the_config_only(tiny_models, tmp_path):
    import_model_code(SimpleNamespace(model=str(tiny_models["big"]), backend="torch"))
    with pytest.raises(ModelLoadError, match="model directory .*missing does not exist"):
        import_model_code(SimpleNamespace(model=str(tmp_path / "missing"), backend="torch"))
    import_model_code(SimpleNamespace(model=str(tmp_path / "missing"), backend="onnx"))  # runs no torch model
