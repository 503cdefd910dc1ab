"""The import rules of ``common``'s rooms (its package docstring states them), enforced two ways.

Statically, every import in a module, at its top or inside a function, is checked
against its room's rule: a rule kept only by convention is a rule nobody can see.
Dynamically, each room is imported whole in a clean interpreter, and the libraries
it must not pull in (directly or through anything it imports) must be absent.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("torch", "transformers", "tokenizers")
QUEUE = ("celery", "kombu", "redis")
PROJECT = ("common.data", "common.ml", "common.queue", "common.testing", "cli", "tier1_worker", "tier2_worker")

# room -> imports it may never make (module prefixes)
FORBIDDEN = {
    "core": (*MODELS, *QUEUE, *PROJECT),
    "data": (*MODELS, *QUEUE, "common.ml", "common.queue", "common.testing", "cli", "tier1_worker",
             "tier2_worker"),
    "ml": (*QUEUE, "common.queue", "common.testing", "cli", "tier1_worker", "tier2_worker"),
    "queue": (*MODELS, "common.ml", "common.testing", "cli", "tier1_worker", "tier2_worker"),
    "worker": ("common.testing", "cli"),
}


def room_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    if parts[0] in ("tier1_worker", "tier2_worker"):
        return "worker"
    if parts[0] != "common":
        return None
    if len(parts) == 2:
        return "core"
    return {"data": "data", "ml": "ml", "queue": "queue"}.get(parts[1])


def imported(source: str) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``source``, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(room: str, source: str) -> list[str]:
    return [f"line {line}: {module}" for line, module in imported(source)
            if any(module == banned or module.startswith(banned + ".") for banned in FORBIDDEN[room])]


def modules() -> list[Path]:
    paths = [*ROOT.glob("common/**/*.py"), *ROOT.glob("tier1_worker/*.py"), *ROOT.glob("tier2_worker/*.py")]
    return sorted(p for p in paths if room_of(p))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_what_its_room_forbids(path: Path):
    assert violations(room_of(path), path.read_text(encoding="utf-8")) == []


def test_the_check_catches_a_broken_rule():
    assert violations("queue", "def load():\n    import torch\n") == ["line 2: torch"]
    assert violations("ml", "from common.queue.store import ResultStore") == ["line 1: common.queue.store"]
    assert violations("core", "from common.data.corpus import read_corpus") == ["line 1: common.data.corpus"]
    assert violations("ml", "import torch.nn\nfrom common.cascade import answers") == []
    assert violations("queue", "import redistools") == []  # a prefix match needs a dot


@pytest.mark.parametrize("room, banned", [("core", MODELS + QUEUE), ("data", MODELS + QUEUE), ("ml", QUEUE),
                                          ("queue", MODELS)])
def test_importing_a_room_whole_loads_nothing_it_forbids(room: str, banned: tuple[str, ...]):
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in modules() if room_of(p) == room]
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {list(banned)!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [], f"{room} pulls in what its rule forbids"


# -- the CLI's rooms and the core's libraries --------------------------------------------------

CLI_FORBIDDEN = {"cli": ("common.testing", "tier1_worker", "tier2_worker"), "demo": ("tier1_worker", "tier2_worker"),
                 "worker": ("common.testing",)}  # `tango worker` starts the worker apps it names
CORE_ALLOWED = ("numpy", "scipy", "sklearn", "huggingface_hub", "common")


def cli_room(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return "demo" if parts[:2] == ("cli", "demo") else "worker" if parts == ("cli", "worker.py") else "cli"


@pytest.mark.parametrize("path", sorted(ROOT.glob("cli/**/*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_cli_module_imports_what_its_room_forbids(path: Path):
    banned = CLI_FORBIDDEN[cli_room(path)]
    found = [module for _, module in imported(path.read_text(encoding="utf-8"))
             if any(module == b or module.startswith(b + ".") for b in banned)]
    assert found == [], f"{path.relative_to(ROOT)} imports {found}"


@pytest.mark.parametrize("path", sorted(p for p in ROOT.glob("common/*.py")), ids=lambda p: p.name)
def test_the_core_uses_only_the_standard_library_and_its_named_libraries(path: Path):
    outside = [module for _, module in imported(path.read_text(encoding="utf-8"))
               if module.split(".")[0] not in sys.stdlib_module_names and module.split(".")[0] not in CORE_ALLOWED]
    assert outside == [], f"{path.name} imports {outside}"
    project = [module for _, module in imported(path.read_text(encoding="utf-8"))
               if module.startswith("common.") and module.count(".") > 1]
    assert project == [], f"{path.name} reaches into a room: {project}"


def test_the_architecture_page_names_every_module():
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    paths = [*ROOT.glob("common/**/*.py"), *ROOT.glob("cli/**/*.py"), *ROOT.glob("tier*_worker/*.py")]
    missing = sorted(str(p.relative_to(ROOT)) for p in paths
                     if p.stem != "__init__" and not re.search(rf"`{p.stem}`|\b{p.stem}\.py\b|`[^`]*\b{p.stem}\b[^`]*`", page))
    assert missing == [], f"docs/ARCHITECTURE.md does not name {missing}"
