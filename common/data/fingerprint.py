"""A corpus file's size and SHA-256, and a way to read exactly the file that was checked.

A job is bound to the bytes it was submitted with: its record keeps their size and digest, and
``resume`` (the CLI's, and every worker's stall sweep) refuses a source that no longer has them.
The source's name comes from Redis, so whoever can write Redis can name any file there; what they
cannot do without already knowing a file's whole content is name its digest, so the check keeps
workers from reading an unknown file into the queue. Only if the bytes checked are the bytes read,
though: a name checked and then opened again by the readers could be swapped in between (a symlink
flipped back and forth). ``PinnedFile`` opens the file once and hands the readers a path to that
open file, so every pass reads the inode that was checked.
"""
from __future__ import annotations

import hashlib
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TypeVar

from common.errors import DataError

BLOCK = 1 << 20

T = TypeVar("T")


@dataclass(frozen=True)
class Fingerprint:
    """How many bytes a file holds and their SHA-256 (hex)."""

    size: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.size} bytes, sha256 {self.sha256[:16]}..."


class PinnedFile:
    """One regular file, opened once: ``fingerprint`` hashes the open file, and ``path`` names it
    for readers that open files by name.

    On Linux ``path`` is the process's link to the descriptor (``/proc/self/fd/N``), which opens the
    inode this object opened whatever has happened to its name since. Elsewhere it is the name
    itself, and only a hash taken after reading (``fingerprint`` again) shows a change. Writing into
    the opened file in place is still seen by the readers; that takes write access to the file, not
    to Redis, and a fingerprint taken after reading shows it.
    """

    def __init__(self, name: str | Path, shown: str | None = None) -> None:
        self.name = str(name)
        self.shown = shown or self.name  # what errors call it: "standard input" for a stream's private copy
        try:  # non-blocking: a FIFO named here must not hang the opener before it is refused
            self.fd = os.open(self.name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise DataError(f"{self.name}: cannot open it ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise DataError(f"{self.name}: not a regular file (a stream can be submitted as `-`)")
        link = f"/proc/self/fd/{self.fd}"
        self.path = link if os.path.exists(link) else self.name

    def fingerprint(self) -> Fingerprint:
        """The open file's size and digest, read now in blocks (never held whole)."""
        digest, offset = hashlib.sha256(), 0
        while block := os.pread(self.fd, BLOCK, offset):
            digest.update(block)
            offset += len(block)
        return Fingerprint(offset, digest.hexdigest())

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def named(self, error: DataError) -> DataError:
        """``error`` (a reader's, naming ``path``) naming the file as the user knows it."""
        return DataError(str(error).replace(self.path, self.shown).replace(self.name, self.shown), error.line)

    @contextmanager
    def naming(self) -> Iterator[None]:
        """Readers' errors inside, re-raised naming the file as the user knows it."""
        try:
            yield
        except DataError as exc:
            raise self.named(exc) from None

    def reading(self, items: Iterator[T]) -> Iterator[T]:
        """``items`` (read through ``path``), their errors naming the file as the user knows it."""
        with self.naming():
            yield from items

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "PinnedFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fingerprint(path: str | Path) -> Fingerprint:
    """A regular file's size and digest, as they are now."""
    with PinnedFile(path) as pinned:
        return pinned.fingerprint()
