"""Where `tango submit -` keeps standard input on this host, so that a job read from a stream can be
read again (its sending pass, ``resume``) and deleted with the job (``purge``)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from common.data.records import FORMATS


def spool_dir() -> Path:
    return Path.home() / ".cache" / "tango" / "spool"


def spool_path(job: str, fmt: str) -> Path:
    """Where a job's copy of its standard input is kept. Exact: a format holds no dot, so no other
    job's id and format make the same name, whatever dots the ids hold."""
    return spool_dir() / f"{job}.{fmt}"


def spool(stream: BinaryIO, fmt: str) -> Path:
    """Standard input copied to a new private file in blocks: a corpus is read twice (validated, then
    sent as workers answer) and again by ``resume``, which a stream cannot be. Its name (hidden, random)
    is no job's: submit moves it to ``spool_path`` only once the job has claimed its id, so a refused
    submit never writes over another job's spool. Kept until ``purge``."""
    directory = spool_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=".incoming-", suffix=f".{fmt}")
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def spooled_paths(job: str) -> list[Path]:
    """Every name the job's spool can have (one per format), and no other job's."""
    return [spool_path(job, fmt) for fmt in FORMATS]
