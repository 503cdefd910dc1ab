"""Progress of long model work, on a terminal and in a log alike.

tqdm draws a bar on a terminal and stays silent when stderr is a file, so a
teacher pass of half an hour run under ``nohup`` or a scheduler showed nothing
until it ended. Off a terminal the same calls write a plain log line at a
steady pace instead (logger ``tango.progress``, which the CLI keeps at INFO).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger("tango.progress")
LOG_EVERY_SECONDS = 30.0
T = TypeVar("T")


class Progress:
    """A counter that reports through tqdm on a terminal and through ``log`` elsewhere."""

    def __init__(self, total: int, desc: str, unit: str = "step", every: float = LOG_EVERY_SECONDS,
                 terminal: bool | None = None) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done = 0
        self.postfix = ""
        self.started = self.last = time.monotonic()
        on_terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar = _tqdm(total, desc, unit) if on_terminal else None

    def update(self, n: int = 1, **postfix: str) -> None:
        self.done += n
        if postfix:
            self.postfix = ", ".join(f"{k} {v}" for k, v in postfix.items())
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.started
        share = self.done / self.total if self.total else 1.0
        left = elapsed * (1 - share) / share if share else float("nan")
        units = self.unit + ("es" if self.unit.endswith("ch") else "s")
        text = f"{self.desc}: {self.done}/{self.total} {units} ({share:.0%}), {_clock(elapsed)} elapsed"
        text += f", ~{_clock(left)} left" if self.done < self.total and share else ""
        return text + (f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def track(items: list[T], desc: str | None, unit: str = "batch") -> Iterator[T] | Iterable[T]:
    """``items`` with progress reported as they are consumed; as they are when ``desc`` is None."""
    if desc is None:
        return items
    return _tracked(items, Progress(len(items), desc, unit))


def _tracked(items: list[T], progress: Progress) -> Iterator[T]:
    try:
        for item in items:
            yield item
            progress.update(1)
    finally:
        progress.close()


def _tqdm(total: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, mininterval=5.0, leave=False)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"
