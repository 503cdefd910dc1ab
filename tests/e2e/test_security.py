"""Security with real parts: an ACL user and a password-protected Redis, TLS, no secret in any log or
output, and every cluster command against a wrong or unreachable Redis failing in one masked line."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from common.testing.cluster import free_port, run_tango, start_celery_worker, start_redis, wait_ready

USER_PASSWORD = "tango-S3cr3t-pw"
ADMIN_PASSWORD = "admin-S3cr3t-pw"
SECRET = "S3cr3t"  # in every password above and below: must appear in no output or log
COMMANDS = {
    "submit": ["submit", "{corpus}", "--labels", "a,b"], "status": ["status", "j"], "wait": ["wait", "j"],
    "results": ["results", "j"], "jobs": ["jobs"], "cancel": ["cancel", "j"], "resume": ["resume", "j"], "purge": ["purge", "j"],
    "worker": ["worker", "tier1", "--model", "{model}"], "queues": ["queues"],
}


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    """A Redis whose default user needs a password and with an ACL user ``tango``."""
    server = start_redis(tmp_path_factory.mktemp("acl"), "--requirepass", ADMIN_PASSWORD,
                         "--user", "tango", "on", f">{USER_PASSWORD}", "~*", "&*", "+@all", password=ADMIN_PASSWORD)
    yield server
    server.stop()


def acl_url(port: int, password: str = USER_PASSWORD) -> str:
    return f"redis://tango:{password}@127.0.0.1:{port}/0"


def write_corpus(path, n: int):
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": f"a film worth seeing , part {i}"}) + "\n"
                            for i in range(n)))
    return path


def run_job(url: str, tiny_models, tmp_path, n: int = 60) -> str:
    """Workers and a whole job over ``url``; returns every CLI output and worker log, concatenated."""
    workers = [start_celery_worker(1, "s1", tiny_models["small"], url, tmp_path),
               start_celery_worker(2, "s2", tiny_models["big"], url, tmp_path)]
    try:
        wait_ready(workers)
        corpus = write_corpus(tmp_path / "in.jsonl", n)
        runs = [run_tango("-vv", "submit", str(corpus), "--job-id", "sec", "--labels", "negative,positive",
                          redis_url=url),
                run_tango("-vv", "wait", "sec", redis_url=url), run_tango("status", "sec", redis_url=url),
                run_tango("jobs", redis_url=url), run_tango("results", "sec", redis_url=url)]
    finally:
        for worker in workers:
            worker.kill()
    for done in runs:
        assert done.returncode == 0, done.stderr[-2000:]
    assert len(runs[-1].stdout.splitlines()) == n
    return "".join(d.stdout + d.stderr for d in runs) + "".join(w.log.read_text() for w in workers)


def test_a_job_runs_as_an_acl_user_and_no_password_reaches_a_log_or_output(acl_redis, tiny_models, tmp_path):
    text = run_job(acl_url(acl_redis.port), tiny_models, tmp_path)
    assert SECRET not in text
    assert f"redis://tango:***@127.0.0.1:{acl_redis.port}/0" in text  # the workers' ready line, masked


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("problem", ["wrong password", "unreachable"])
def test_every_cluster_command_fails_in_one_masked_line(acl_redis, tiny_models, tmp_path, command, problem):
    port = acl_redis.port if problem == "wrong password" else free_port()
    url = acl_url(port, password="wrong-S3cr3t")
    args = [a.format(corpus=write_corpus(tmp_path / "in.jsonl", 3), model=tiny_models["small"])
            for a in COMMANDS[command]]
    done = run_tango(*args, redis_url=url, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"redis://tango:***@127.0.0.1:{port}/0" in lines[0]
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("url, message", [
    ("redis://127.0.0.1:{port}/0?password=S3cr3t", "not in the query"),
    ("redis://tango:S3cr3t@127.0.0.1:99999/0", "Port out of range"),
    ("redis://tango:S3cr3t@[127.0.0.1:{port}/0", "malformed"),
    ("rediss://tango:S3cr3t@127.0.0.1:{port}/0?ssl_cert_reqs=none", "would turn TLS checks off"),
])
def test_a_url_with_a_secret_in_its_query_or_malformed_is_one_masked_config_error(tiny_models, tmp_path, command,
                                                                                  url, message):
    args = [a.format(corpus=write_corpus(tmp_path / "in.jsonl", 3), model=tiny_models["small"])
            for a in COMMANDS[command]]
    done = run_tango(*args, redis_url=url.format(port=free_port()), timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert message in lines[0] and SECRET not in done.stdout + done.stderr


def test_a_job_runs_over_tls_with_the_certificate_checked(tiny_models, tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    tls_port = free_port()
    server = start_redis(tmp_path, "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file",
                         str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        run_job(url, tiny_models, tmp_path, n=30)
        unchecked = run_tango("jobs", redis_url=f"rediss://127.0.0.1:{tls_port}/0", timeout=60)
    finally:
        server.stop()
    # without the private CA the self-signed certificate is refused, not silently accepted
    assert unchecked.returncode == 3 and "certificate verify failed" in unchecked.stderr
