"""Which weights a model name meant when a job was submitted: provenance names a revision, not only a path.

A local directory reads as ``sha256:`` and a digest of its files' names, sizes and contents, so a
directory retrained in place under the same name reads as another revision. A hub id reads as the
commit of the snapshot its local cache holds, which is what the loaders here read offline. Neither
loads a model, and neither asks the network.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def model_revision(name_or_path: str | None) -> str | None:
    """The revision of a local model directory or of a cached hub id; None when it names neither."""
    if not name_or_path:
        return None
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return "sha256:" + directory_digest(local)
    return _cached_commit(name_or_path)


def directory_digest(root: Path) -> str:
    """SHA-256 over every file below ``root`` in name order: each name and size framed, then its bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
        digest.update(len(name).to_bytes(8, "little") + name + path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def _cached_commit(repo: str) -> str | None:
    """The commit of the cached snapshot holding ``repo``'s config.json, if the hub cache has one."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id or cache: there is simply no revision to record
        return None
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None
