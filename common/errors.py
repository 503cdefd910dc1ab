"""One error hierarchy for the whole project.

The CLI turns every ``TangoError`` into a single line on stderr and the
``exit_code`` of its class, so library callers and shell users see the same
message.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # the work ran but did not succeed (e.g. a job with failed items)
EXIT_USAGE = 2  # bad options, bad input, bad models: nothing was done
EXIT_UNAVAILABLE = 3  # a service (Redis) could not be reached
EXIT_LOST = 4  # a job's records vanished from Redis: its results cannot be trusted or completed


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries' messages run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TangoError(Exception):
    """Base class of every error tango raises on purpose."""

    exit_code = EXIT_USAGE


class ConfigError(TangoError):
    """Raised when an option or setting is out of range or inconsistent."""


class GuaranteeError(ConfigError):
    """Raised when a job's quality target (--max-disagreement, --max-drop, --confidence, --calibration)
    cannot be certified as asked."""


class DataError(TangoError):
    """Raised when an input file or one of its records cannot be used; ``line`` names the record."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class ModelLoadError(TangoError):
    """Raised when a model or tokenizer cannot be loaded or reshaped."""


class LabelMismatchError(TangoError):
    """Raised when the two tiers' label sets cannot be matched."""


class ServiceUnavailable(TangoError):
    """Raised when Redis (broker or result store) cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


class WorkerError(TangoError):
    """Raised when a worker process that tango started exits early or never becomes ready."""

    exit_code = EXIT_FAILURE


class JobError(TangoError):
    """Raised when a job is unknown, malformed, or its records are gone."""


class JobGoneError(JobError):
    """Raised when a known job's records vanished from Redis (a restart without persistence, eviction)."""

    exit_code = EXIT_LOST


class Interrupted(TangoError):
    """Raised when the user stops a command midway; its message says how to pick the work up again."""

    exit_code = 130


class MessageError(TangoError):
    """Raised when a queue message is not a valid tango chunk (it is dropped, never run)."""
