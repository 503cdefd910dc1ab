"""Cluster settings: where Redis is and how long a task may stay unacknowledged.

Settings flow in explicitly (a CLI option, else an environment variable, else a
default) and are grouped in one frozen object, so the CLI, both workers and the
Celery app agree on them. Every URL that is printed or logged goes through
``mask_url`` first: a Redis password must never reach a terminal or a log.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from common.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# kombu redelivers a task still unacknowledged after this long; keep it well
# above the longest chunk's run time (RELIABILITY.md), short only in tests.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
DEFAULT_CHUNK_SIZE = 64
MAX_CHUNK_SIZE = 4096  # nothing caps a message's size on the Redis transport but us
DEFAULT_CONNECT_TIMEOUT = 3.0
PRECISIONS = ("fp32", "bf16", "fp16")  # a model's float type (bf16/fp16 on GPUs)
DEFAULT_MAX_ITEMS = 10_000_000  # per job; a larger corpus is more likely a mistake than a job

ENV_MAX_ITEMS = "TANGO_MAX_ITEMS"

ENV_REDIS_URL = "TANGO_REDIS_URL"
ENV_VISIBILITY_TIMEOUT = "TANGO_VISIBILITY_TIMEOUT"
ENV_CONNECT_TIMEOUT = "TANGO_CONNECT_TIMEOUT"

_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class ClusterSettings:
    """What every cluster participant must agree on."""

    redis_url: str = DEFAULT_REDIS_URL
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in _SCHEMES:
            raise ConfigError(f"Redis URL {mask_url(self.redis_url)!r} must start with redis://, "
                              "rediss:// or unix://")
        if not self.visibility_timeout > 0:
            raise ConfigError(f"visibility timeout must be positive, got {self.visibility_timeout}")
        if not self.connect_timeout > 0:
            raise ConfigError(f"connect timeout must be positive, got {self.connect_timeout}")

    @property
    def masked_url(self) -> str:
        return mask_url(self.redis_url)

    @classmethod
    def from_env(cls, redis_url: str | None = None, env: dict[str, str] | None = None) -> "ClusterSettings":
        """Settings from an explicit URL (the ``--redis-url`` option) or the environment."""
        env = os.environ if env is None else env
        return cls(redis_url=redis_url or env.get(ENV_REDIS_URL) or DEFAULT_REDIS_URL,
                   visibility_timeout=_float(env, ENV_VISIBILITY_TIMEOUT, DEFAULT_VISIBILITY_TIMEOUT),
                   connect_timeout=_float(env, ENV_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT))

    def to_env(self) -> dict[str, str]:
        """The environment a child process (a worker) needs to rebuild these settings."""
        return {ENV_REDIS_URL: self.redis_url, ENV_VISIBILITY_TIMEOUT: repr(self.visibility_timeout),
                ENV_CONNECT_TIMEOUT: repr(self.connect_timeout)}


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (the user name is kept)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
