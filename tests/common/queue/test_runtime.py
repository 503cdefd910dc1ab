"""A worker's start before the fork: its checks, then its model's code imported once for every pool process."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from common.queue.decisions import decide_tier1
from common.queue.runtime import TierRuntime


def preflight(runtime: TierRuntime) -> None:
    """What Celery's ``worker_init`` signal does in the parent process before it forks, then what
    ``worker_ready`` logs (in a solo pool, as that loads no model at ``worker_process_init``)."""
    runtime._preflight(sender=SimpleNamespace(app=runtime.app))
    runtime.loader = lambda settings: SimpleNamespace(labels=["negative", "positive"], device="cpu", on_batch=None)
    runtime._on_ready(sender=SimpleNamespace(pool=None, timer=None))


def tier1(model, redis_url: str, preload) -> TierRuntime:
    env = {"TANGO_MODEL": str(model), "TANGO_REDIS_URL": redis_url}
    return TierRuntime(tier=1, decide=decide_tier1, loader=lambda settings: pytest.fail("loaded before the fork"),
                       env=env, preload=preload)


def test_the_parent_imports_the_models_code_before_any_model_is_loaded(tiny_models, redis_url, caplog):
    seen = []
    runtime = tier1(tiny_models["small"], redis_url, lambda settings: seen.append(settings.model))
    with caplog.at_level(logging.INFO):
        preflight(runtime)
    assert seen == [str(tiny_models["small"])]
    assert "tier 1 worker imported its model's code before forking" in caplog.text


def test_a_preload_that_fails_only_warns_and_leaves_the_error_to_the_load(tiny_models, redis_url, caplog):
    def broken(settings):
        raise RuntimeError("unknown architecture\nwith a traceback below")

    with caplog.at_level(logging.WARNING):
        preflight(tier1(tiny_models["small"], redis_url, broken))
    assert "could not import its model's code before forking: unknown architecture" in caplog.text
    assert "traceback" not in caplog.text
