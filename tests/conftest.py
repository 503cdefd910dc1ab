"""Shared fixtures: a throwaway redis-server, tiny models built on the spot, and the GLUE data in ../shared.

A missing ``redis-server`` fails the tests that need it rather than skipping them:
the cluster is the product, and a suite that silently skips it proves nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.testing.cluster import start_redis
from common.testing.tiny import build_tiny_model, build_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from transformers.utils import logging as _hf_logging  # noqa: E402

_hf_logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parents[1]
# Whole directories of tests that start real Celery workers or train models: marked ``slow``, so
# ``python -m pytest -m "not slow"`` runs the rest quickly. CI runs everything. Single slow tests
# elsewhere carry ``@pytest.mark.slow`` (or a module's ``pytestmark``) themselves.
SLOW_DIRS = tuple(ROOT / "tests" / name for name in ("e2e", "chaos", "cli/demo"))
GLUE_DIR = Path(os.environ.get("TANGO_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under ``SLOW_DIRS`` slow, so a new test there is slow without remembering to say so."""
    for item in items:
        if any(item.path.is_relative_to(directory) for directory in SLOW_DIRS):
            item.add_marker(pytest.mark.slow)


def _sample_corpus() -> list[str]:
    lines = []
    for name in ("sst2/dev.tsv", "rte/dev.tsv"):
        path = GLUE_DIR / name
        if path.is_file():
            lines += path.read_text(encoding="utf-8").splitlines()[:400]
    return lines or ["a good film", "a bad film"]


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    assert (GLUE_DIR / "sst2" / "dev.tsv").is_file(), f"GLUE data missing under {GLUE_DIR}"
    return GLUE_DIR


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(_sample_corpus())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """small/big with the same labels; rte_* with RTE's; other_* with a different set."""
    root = tmp_path_factory.mktemp("models")
    sentiment = ["negative", "positive"]
    rte = ["entailment", "not_entailment"]
    specs = {
        "small": (sentiment, 1, 1), "big": (sentiment, 3, 2),
        "rte_small": (rte, 1, 3), "rte_big": (rte, 2, 4),
        "generic_big": (["LABEL_0", "LABEL_1"], 2, 5),
        "other": (["red", "green", "blue"], 1, 6),
        "other_names": (["cat", "dog"], 1, 7),
    }
    return {name: build_tiny_model(root / name, labels, layers=layers, seed=seed, tokenizer=tokenizer)
            for name, (labels, layers, seed) in specs.items()}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server) -> str:
    """A clean database for each test."""
    redis_server.client().flushall()
    return redis_server.url
