"""A model's revision: a directory's content digest, a hub id's cached commit, or nothing to pin."""
from __future__ import annotations

from common.revision import model_revision


def write_model(root, weights: bytes):
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 8}')
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_a_directory_reads_as_its_contents_not_its_name(tmp_path):
    first = model_revision(str(write_model(tmp_path / "a", b"\x00" * 100)))
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert model_revision(str(write_model(tmp_path / "b", b"\x00" * 100))) == first  # same bytes, other place
    (tmp_path / "a" / "model.safetensors").write_bytes(b"\x00" * 99 + b"\x01")  # retrained in place
    assert model_revision(str(tmp_path / "a")) != first
    (tmp_path / "b" / "model.safetensors").rename(tmp_path / "b" / "other.safetensors")
    assert model_revision(str(tmp_path / "b")) != first


def test_a_hub_id_reads_as_the_commit_of_its_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert model_revision("org/tiny") == commit
    assert model_revision("org/not-cached") is None


def test_nothing_named_has_no_revision():
    assert model_revision(None) is None and model_revision("") is None
