"""Settings from the environment: the cluster's (Redis, visibility timeout) and one worker's (its model).

Settings flow in explicitly (a CLI option, else an environment variable, else a
default) and are grouped in frozen objects, so the CLI, both workers and the
Celery app agree on them. Every URL that is printed or logged goes through
``mask_url`` first: a Redis password must never reach a terminal or a log.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from common.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# kombu redelivers a task still unacknowledged after this long: keep it well above the longest
# chunk's run time (a chunk that runs longer is delivered twice), short only in tests.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
MAX_CHUNK_SIZE = 4096  # nothing caps a message's size on the Redis transport but us
# --chunk-size auto: the largest chunk up to AUTO_CHUNK_MAX that still cuts a job into AUTO_CHUNKS tasks,
# and never less than AUTO_CHUNK_MIN (below it the per-item cost climbs steeply: bench/RESULTS.md (12))
AUTO_CHUNK_MIN, AUTO_CHUNK_MAX, AUTO_CHUNKS = 256, 1024, 16
DEFAULT_WINDOW = 20_000  # items of one job in the broker at once (0: the whole corpus at once)
ENV_WINDOW = "TANGO_WINDOW"
DEFAULT_AUDIT_RATE = 0.02  # share of tier 1's answers tier 2 checks: every job gets an agreement estimate
DEFAULT_CONNECT_TIMEOUT = 3.0
PRECISIONS = ("fp32", "bf16", "fp16")  # a model's float type (bf16/fp16 on GPUs)
DEFAULT_MAX_ITEMS = 10_000_000  # per job; a larger corpus is more likely a mistake than a job

ENV_MAX_ITEMS = "TANGO_MAX_ITEMS"
ENV_MAX_ATTEMPTS = "TANGO_MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 5  # starts per chunk and tier; kills of *other* chunks never count
ENV_MODEL = "TANGO_MODEL"
ENV_DEVICE = "TANGO_DEVICE"
ENV_BATCH_SIZE = "TANGO_BATCH_SIZE"
ENV_THREADS = "TANGO_THREADS"
ENV_MAX_WAIT_MS = "TANGO_MAX_WAIT_MS"  # tier 2: > 0 gathers items of many chunks into one batch
ENV_QUANTIZE = "TANGO_QUANTIZE"
ENV_PRECISION = "TANGO_PRECISION"
ENV_BACKEND = "TANGO_BACKEND"  # torch or onnx
ENV_METRICS_PORT = "TANGO_METRICS_PORT"
ENV_WORKER_TTL = "TANGO_WORKER_TTL"
# seconds a worker stays in the label registry after its last heartbeat (beats come 4 times as often):
# a worker killed without a word is gone from it after this long. A solo-pool worker beats between tasks
# only, so keep it above the longest chunk's run time
DEFAULT_WORKER_TTL = 120.0

ENV_REDIS_URL = "TANGO_REDIS_URL"
ENV_VISIBILITY_TIMEOUT = "TANGO_VISIBILITY_TIMEOUT"
ENV_CONNECT_TIMEOUT = "TANGO_CONNECT_TIMEOUT"
ENV_SWEEP_INTERVAL = "TANGO_SWEEP_INTERVAL"
ENV_FEEDER_LEASE = "TANGO_FEEDER_LEASE"
# a feeder refreshes its lease several times within it, so only a feeder that is gone (killed, its host
# or network down) lets it lapse; then the job's status says so and the workers' sweep may feed it
DEFAULT_FEEDER_LEASE = 30.0

_SCHEMES = ("redis", "rediss", "unix")
# query parameters whose value is a secret (redis-py reads ``?password=``): masked wherever a URL is shown
_SECRET_PARAMS = re.compile(r"pass|pwd|auth|token|secret|credential|key$", re.IGNORECASE)
# query values that would turn certificate or hostname checks off; the README promises both are always made
_WEAK_TLS = {"ssl_cert_reqs": {"none", "optional", "cert_none", "cert_optional", "0", "1"},
             "ssl_check_hostname": {"false", "0", "no", "off", "n", "f"}}


@dataclass(frozen=True)
class ClusterSettings:
    """What every cluster participant must agree on."""

    redis_url: str = DEFAULT_REDIS_URL
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    sweep_interval: float | None = None  # None: see ``sweep_every``; 0: workers never sweep
    feeder_lease: float = DEFAULT_FEEDER_LEASE  # seconds a feeder's silence is taken for its end

    def __post_init__(self) -> None:
        validate_url(self.redis_url)
        if not self.visibility_timeout > 0:
            raise ConfigError(f"visibility timeout must be positive, got {self.visibility_timeout}")
        if not self.connect_timeout > 0:
            raise ConfigError(f"connect timeout must be positive, got {self.connect_timeout}")
        if self.sweep_interval is not None and self.sweep_interval < 0:
            raise ConfigError(f"{ENV_SWEEP_INTERVAL} must be 0 (off) or a number of seconds, got {self.sweep_interval}")
        if not self.feeder_lease > 0:
            raise ConfigError(f"{ENV_FEEDER_LEASE} must be a positive number of seconds, got {self.feeder_lease}")

    @property
    def masked_url(self) -> str:
        return mask_url(self.redis_url)

    @property
    def sweep_every(self) -> float:
        """Seconds between the workers' sweeps for stalled jobs: well above the visibility timeout, so
        that kombu has brought back every task a dead worker held before a job counts as stalled."""
        return max(10.0, 2.5 * self.visibility_timeout) if self.sweep_interval is None else self.sweep_interval

    @classmethod
    def from_env(cls, redis_url: str | None = None, env: dict[str, str] | None = None) -> "ClusterSettings":
        """Settings from an explicit URL (the ``--redis-url`` option) or the environment."""
        env = os.environ if env is None else env
        return cls(redis_url=redis_url or env.get(ENV_REDIS_URL) or DEFAULT_REDIS_URL,
                   visibility_timeout=_float(env, ENV_VISIBILITY_TIMEOUT, DEFAULT_VISIBILITY_TIMEOUT),
                   connect_timeout=_float(env, ENV_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT),
                   sweep_interval=_float(env, ENV_SWEEP_INTERVAL, None),
                   feeder_lease=_float(env, ENV_FEEDER_LEASE, DEFAULT_FEEDER_LEASE))

    def to_env(self) -> dict[str, str]:
        """The environment a child process (a worker) needs to rebuild these settings."""
        env = {ENV_REDIS_URL: self.redis_url, ENV_VISIBILITY_TIMEOUT: repr(self.visibility_timeout),
               ENV_CONNECT_TIMEOUT: repr(self.connect_timeout), ENV_FEEDER_LEASE: repr(self.feeder_lease)}
        if self.sweep_interval is not None:
            env[ENV_SWEEP_INTERVAL] = repr(self.sweep_interval)
        return env


@dataclass(frozen=True)
class WorkerSettings:
    """One worker's model and how it runs it, read from the environment ``tango worker`` sets."""

    tier: int
    model: str
    device: str = "cpu"
    batch_size: int = 32
    threads: int | None = None
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # starts of one chunk before its items are recorded as failed
    max_wait_ms: int = 0
    quantize: bool = False
    precision: str = "fp32"
    metrics_port: int = 0
    backend: str = "torch"
    worker_ttl: float = DEFAULT_WORKER_TTL

    @classmethod
    def from_env(cls, tier: int, env: dict[str, str] | None = None) -> "WorkerSettings":
        env = os.environ if env is None else env
        model = env.get(ENV_MODEL, "").strip()
        if not model:
            raise ConfigError(f"tier {tier} worker: set {ENV_MODEL} to the model directory "
                              f"(or start it with `tango worker tier{tier} --model PATH`)")
        return cls(tier=tier, model=model, device=env.get(ENV_DEVICE, "cpu") or "cpu",
                   batch_size=_int(env, ENV_BATCH_SIZE, 32), threads=_int(env, ENV_THREADS, None),
                   cluster=ClusterSettings.from_env(env=env),
                   max_attempts=_int(env, ENV_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
                   max_wait_ms=_int(env, ENV_MAX_WAIT_MS, 0, low=0), quantize=env.get(ENV_QUANTIZE, "") == "1",
                   precision=env.get(ENV_PRECISION) or "fp32", metrics_port=_int(env, ENV_METRICS_PORT, 0, low=0),
                   backend=env.get(ENV_BACKEND) or "torch",
                   worker_ttl=worker_ttl(env))

    def to_env(self) -> dict[str, str]:
        env = {ENV_MODEL: self.model, ENV_DEVICE: self.device, ENV_BATCH_SIZE: str(self.batch_size),
               ENV_MAX_ATTEMPTS: str(self.max_attempts), ENV_MAX_WAIT_MS: str(self.max_wait_ms),
               ENV_QUANTIZE: "1" if self.quantize else "", ENV_PRECISION: self.precision,
               ENV_METRICS_PORT: str(self.metrics_port), ENV_BACKEND: self.backend,
               ENV_WORKER_TTL: repr(self.worker_ttl), **self.cluster.to_env()}
        if self.threads:
            env[ENV_THREADS] = str(self.threads)
        return env


def resolve_chunk_size(requested: int | None, items: int, window: int = 0, option: str = "--chunk-size") -> int:
    """A job's items per tier-1 task: ``requested``, or for ``None`` (auto) one picked for the job.

    Larger chunks are far cheaper per item: a worker sorts its chunk by length before batching,
    so it pads less, and pays each task's fixed costs over more items (bench/RESULTS.md, section
    11). Auto therefore takes the largest chunk up to AUTO_CHUNK_MAX that still leaves a job
    AUTO_CHUNKS tasks to spread over the workers, but no smaller than AUTO_CHUNK_MIN: a small job
    labels faster in fewer, larger tasks than spread thin (section 12), and never more than the
    window admits at once.
    """
    if validate_chunk_size(requested, option) is not None:
        return requested
    size = max(AUTO_CHUNK_MIN, min(AUTO_CHUNK_MAX, -(-items // AUTO_CHUNKS)))
    return min(size, window) if window > 0 else size


def validate_chunk_size(requested: int | None, option: str = "--chunk-size") -> int | None:
    """``requested`` if it is auto (``None``) or a size a task may have; checked before a corpus is read."""
    if requested is not None and not 1 <= requested <= MAX_CHUNK_SIZE:
        raise ConfigError(f"{option} must be 'auto' or between 1 and {MAX_CHUNK_SIZE}, got {requested}")
    return requested


def mask_url(url: str) -> str:
    """The URL with its password and every secret query value (``?password=``, ``?token=``...) replaced
    by ``***`` (the user name is kept). Works on the text alone, so a URL too malformed to parse (a port
    out of range, a bad host) is masked too: it is the one an error message shows."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return re.sub(r"(?i)(password|pass|pwd|auth|token|secret)=[^&#\s]*", r"\1=***", url)
    rest, hashmark, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    slash = rest.find("/")
    netloc, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    if query:
        query = "&".join(_mask_param(param) for param in query.split("&"))
    return f"{scheme}://{netloc}{path}{question}{query}{hashmark}{fragment}"


def _mask_param(param: str) -> str:
    name, equals, value = param.partition("=")
    return f"{name}=***" if equals and value and _SECRET_PARAMS.search(name) else param


def validate_url(url: str) -> str:
    """``url`` if both clients (redis-py for the store, kombu for the broker) can read it as given, with
    certificate and host name checks on; a one-line ``ConfigError`` (the URL masked) otherwise, never a
    traceback from deep in a client."""
    from kombu.utils.url import parse_url as broker_parse_url
    from redis.connection import parse_url

    shown = mask_url(url)
    if url.partition("://")[0] not in _SCHEMES:
        raise ConfigError(f"Redis URL {shown!r} must start with redis://, rediss:// or unix://")
    try:
        parse_url(url)
        query = urlsplit(url).query
        urlsplit(url).port  # noqa: B018 - parse_url reads it only when a host is given
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"Redis URL {shown!r} is malformed: {mask_url(str(exc))}") from None
    try:
        broker_parse_url(url)
    except (ValueError, TypeError) as exc:  # kombu reads the user, password, host and port from the URL alone
        raise ConfigError(f"Redis URL {shown!r} cannot be read by the broker client ({mask_url(str(exc))}); give "
                          "the user and password as redis://USER:PASSWORD@HOST:PORT/DB, not in the query") from None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if value.strip().lower() in _WEAK_TLS.get(name.lower(), ()):
            raise ConfigError(f"Redis URL {shown!r}: {name}={value} would turn TLS checks off; tango always checks "
                              "the server's certificate and host name (give a private CA with ssl_ca_certs=PATH)")
    return url


def _float(env: dict[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def worker_ttl(env: dict[str, str] | None = None) -> float:
    """Seconds a worker stays in the label registry past its last heartbeat (``TANGO_WORKER_TTL``)."""
    value = _float(os.environ if env is None else env, ENV_WORKER_TTL, DEFAULT_WORKER_TTL)
    if not value > 0:
        raise ConfigError(f"{ENV_WORKER_TTL} must be a positive number of seconds, got {value}")
    return value


def _int(env: dict[str, str], name: str, default: int | None, low: int = 1) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    return value
