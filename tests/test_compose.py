"""docker-compose.yml against the Compose Specification's schema (no Docker engine runs here)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "data" / "schemas" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_is_a_valid_compose_file(compose):
    assert SCHEMA.is_file(), f"schema missing at {SCHEMA}"
    jsonschema.validate(compose, json.loads(SCHEMA.read_text()))


def test_redis_keeps_jobs_across_restarts_and_never_evicts(compose):
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command


def test_each_tier_serves_its_queue_with_models_from_a_volume(compose):
    for tier in ("tier1", "tier2"):
        service = compose["services"][tier]
        assert service["command"][:2] == ["worker", tier]
        assert any(volume.endswith(":/models:ro") for volume in service["volumes"])
        assert service["environment"]["TANGO_REDIS_URL"].startswith("redis://redis:")
        assert "healthcheck" in service and "scale" not in service  # scaled with --scale


def test_tier2_reserves_a_gpu_and_does_not_fork_cuda(compose):
    service = compose["services"]["tier2"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert service["command"][service["command"].index("--pool") + 1] == "solo"
    assert "deploy" not in compose["services"]["tier1"]


def test_the_dockerfile_installs_every_package_compose_runs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("common", "cli", "tier1_worker", "tier2_worker"):
        assert f"COPY {package} " in dockerfile
