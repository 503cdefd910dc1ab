"""Cluster settings and the Celery settings built from them."""
from __future__ import annotations

import ssl

import pytest

from common.queue.celery_app import celery_config, make_app
from common.queue.config import ClusterSettings, mask_url, resolve_chunk_size
from common.errors import ConfigError


@pytest.mark.parametrize("url, masked", [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://alice:pw@host/1", "redis://alice:***@host/1"),
    ("rediss://bob:p%40ss@[::1]:6380/0", "rediss://bob:***@[::1]:6380/0"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1"),
    ("unix://:pw@/tmp/r.sock?db=0&PASS=pw&auth_token=pw", "unix://:***@/tmp/r.sock?db=0&PASS=***&auth_token=***"),
    ("rediss://h/0?ssl_keyfile=/k.pem&ssl_ca_certs=/ca.pem", "rediss://h/0?ssl_keyfile=/k.pem&ssl_ca_certs=/ca.pem"),
    ("redis://u:pw@h:99999/0?token=pw", "redis://u:***@h:99999/0?token=***"),  # too malformed to parse
    ("redis://u:pw@[::1/0", "redis://u:***@[::1/0"),
])
def test_mask_url_hides_only_the_password(url, masked):
    assert mask_url(url) == masked


def test_settings_come_from_the_option_then_the_environment():
    env = {"TANGO_REDIS_URL": "redis://env:1/0", "TANGO_VISIBILITY_TIMEOUT": "7.5"}
    assert ClusterSettings.from_env(env=env).redis_url == "redis://env:1/0"
    assert ClusterSettings.from_env("redis://opt:2/0", env=env).redis_url == "redis://opt:2/0"
    assert ClusterSettings.from_env(env=env).visibility_timeout == 7.5
    assert ClusterSettings.from_env(env={}).redis_url == "redis://localhost:6379/0"
    assert ClusterSettings.from_env(env={"TANGO_FEEDER_LEASE": "2.5"}).feeder_lease == 2.5
    assert ClusterSettings.from_env(env={}).feeder_lease == 30.0
    custom = ClusterSettings(redis_url="redis://h/0", visibility_timeout=4, sweep_interval=2, feeder_lease=1.5)
    assert ClusterSettings.from_env(env=custom.to_env()) == custom  # what a worker rebuilds from its parent


@pytest.mark.parametrize("env", [{"TANGO_REDIS_URL": "http://x:pw@h/0"}, {"TANGO_VISIBILITY_TIMEOUT": "soon"},
                                 {"TANGO_VISIBILITY_TIMEOUT": "0"}, {"TANGO_FEEDER_LEASE": "0"}])
def test_bad_settings_are_config_errors_without_the_password(env):
    with pytest.raises(ConfigError) as caught:
        ClusterSettings.from_env(env=env)
    assert "pw" not in str(caught.value)


def test_celery_settings_fit_long_model_work():
    config = celery_config(ClusterSettings(redis_url="redis://h/0", visibility_timeout=6))
    assert config["accept_content"] == ["json"] and config["result_accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == 6 == config["visibility_timeout"]
    assert config["broker_transport_options"]["unacked_restore_interval"] <= 6
    assert config["broker_transport_options"]["unacked_mutex_expire"] == 6
    long = celery_config(ClusterSettings(redis_url="redis://h/0", visibility_timeout=3600))
    assert long["broker_transport_options"]["unacked_mutex_expire"] == 300
    assert config["task_routes"] == {"tango.tier1.classify": {"queue": "tier1"},
                                     "tango.tier2.classify": {"queue": "tier2"}}
    assert config["result_backend"] is None


def test_tls_urls_check_certificates():
    config = celery_config(ClusterSettings(redis_url="rediss://h:6380/0"))
    assert config["broker_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert config["broker_use_ssl"]["ssl_check_hostname"] is True


@pytest.mark.parametrize("query", ["ssl_cert_reqs=none", "ssl_cert_reqs=CERT_OPTIONAL", "ssl_check_hostname=false",
                                   "ssl_ca_certs=/ca.pem&ssl_check_hostname=0"])
def test_a_url_that_turns_tls_checks_off_is_refused(query):
    with pytest.raises(ConfigError, match="would turn TLS checks off"):
        ClusterSettings(redis_url=f"rediss://:pw@h:6380/0?{query}")


@pytest.mark.parametrize("url, message", [
    ("redis://:pw@h:99999/0", "Port out of range"), ("redis://:pw@[::1/0", "Invalid IPv6 URL"),
    ("redis://h/0?socket_timeout=soon&password=pw", "malformed"), ("redis://h/0?password=pw", "not in the query"),
])
def test_a_malformed_url_is_one_config_error_without_the_password(url, message):
    with pytest.raises(ConfigError, match=message) as caught:
        ClusterSettings(redis_url=url)
    assert "pw" not in str(caught.value) and "\n" not in str(caught.value)


def test_the_app_refuses_pickle():
    app = make_app("client", ClusterSettings())
    assert "pickle" not in app.conf.accept_content


def test_a_sent_chunk_is_described_in_one_line_without_its_texts():
    """Monitors and logs see the chunk's description; the payload itself travels whole."""
    from kombu import Connection

    from common.queue.celery_app import send_chunk
    from common.queue.messages import Chunk, WorkItem

    app = make_app("client", ClusterSettings())
    app.conf.update(broker_url="memory://", broker_transport=None)
    chunk = Chunk("job-1", 3, 1, 0.9, ("neg", "pos"), (WorkItem(0, "a", "secret text"), WorkItem(1, "b", "more")))
    send_chunk(app, "tango.tier1.classify", chunk)
    with Connection("memory://") as conn:
        message = conn.SimpleQueue("tier1").get(timeout=5)
    assert message.headers["argsrepr"] == "[job 'job-1' chunk 3 tier 1: 2 items]"
    assert Chunk.decode(message.payload[0][0]) == chunk


@pytest.mark.parametrize("items, window, size", [
    (0, 0, 256), (100, 0, 256), (4096, 0, 256), (4112, 0, 257), (10_000, 0, 625), (16 * 1024, 0, 1024),
    (10_000_000, 0, 1024), (10_000_000, 20_000, 1024), (10_000_000, 300, 300), (2000, 50, 50),
])
def test_auto_chunks_cut_a_job_into_enough_tasks_of_at_most_1024_items_within_the_window(items, window, size):
    assert resolve_chunk_size(None, items, window) == size


def test_a_chunk_size_given_is_kept_and_one_out_of_range_is_refused_by_name():
    assert resolve_chunk_size(7, 10_000_000) == 7
    for bad in (0, 4097):
        with pytest.raises(ConfigError, match=f"--chunk-size must be 'auto' or between 1 and 4096, got {bad}"):
            resolve_chunk_size(bad, 100)
