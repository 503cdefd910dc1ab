"""Options shared by the commands that read a corpus or talk to Redis.

``submit`` and ``label`` must read a corpus the same way (so their outputs can
be diffed), and every cluster command must name and reach Redis the same way.
"""
from __future__ import annotations

import contextlib
from typing import IO, Callable, Iterator

import click

from common.queue.config import (AUTO_CHUNK_MAX, AUTO_CHUNK_MIN, AUTO_CHUNKS, DEFAULT_AUDIT_RATE,
                                 DEFAULT_WINDOW, ENV_WINDOW, MAX_CHUNK_SIZE, ClusterSettings)
from common.data.corpus import CorpusSpec
from common.errors import ConfigError, ServiceUnavailable, first_line
from common.data.records import FORMATS
from common.queue.results import TEXT_FORMATS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_WARNED: set[str] = set()  # old spellings already warned of in this process


def hyphenate(command: click.Command, args: list[str]) -> list[str]:
    """``args`` with the old underscore spelling of each of ``command``'s hyphenated options rewritten.

    Options are spelled with hyphens, as click and the Celery CLI spell them. Scripts written
    against the underscore spellings keep working for a while, and are told once what to change.
    An option the command itself declares with underscores (the research script's flags) is left alone.
    """
    declared = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    out: list[str] = []
    for position, arg in enumerate(args):
        if arg == "--":
            return out + list(args[position:])
        flag, equals, value = arg.partition("=")
        new = flag.replace("_", "-")
        if flag.startswith("--") and flag not in declared and new != flag and new in declared:
            _warn_once(flag, new)
            arg = new + equals + value
        out.append(arg)
    return out


def _warn_once(old: str, new: str) -> None:
    if old not in _WARNED:
        _WARNED.add(old)
        click.echo(f"warning: {old} is deprecated and will be removed; use {new}", err=True)


def corpus_options(command: Callable) -> Callable:
    """``--format`` and the column options, turned into a ``CorpusSpec`` by ``corpus_spec``."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                     help="Input format (default: from the file's suffix)."),
        click.option("--text-column", default="text", show_default=True, help="Field holding the text."),
        click.option("--pair-column", default=None,
                     help="Field holding the second text of a pair (default: 'text_pair' where present)."),
        click.option("--id-column", default="id", show_default=True,
                     help="Field holding the item id (default id: the line number)."),
        click.option("--label-column", default="label", show_default=True,
                     help="Field holding a gold label, if any (for the metric)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def corpus_spec(fmt: str | None, text_column: str, pair_column: str | None, id_column: str,
                label_column: str) -> CorpusSpec:
    return CorpusSpec(fmt=fmt, text_column=text_column, pair_column=pair_column, id_column=id_column,
                      label_column=label_column)


def output_options(flag: str, formats: tuple[str, ...] = TEXT_FORMATS) -> Callable[[Callable], Callable]:
    """``-o OUT`` plus the output format option, named ``flag`` (``label`` has an input ``--format``)."""
    def decorate(command: Callable) -> Callable:
        command = click.option(flag, "out_format", type=click.Choice(formats), default=None,
                               help=f"{', '.join(formats)} (default: from OUT's suffix, else jsonl).")(command)
        return click.option("-o", "--output", "output", default="-", metavar="OUT",
                            help="Write the results here (default: stdout).")(command)
    return decorate


def output_format(output: str, out_format: str | None, formats: tuple[str, ...] = TEXT_FORMATS) -> str:
    """``out_format``, else the one of ``formats`` OUT's suffix names, else jsonl."""
    if out_format:
        return out_format
    named = {"csv": "csv", "parquet": "parquet", "pq": "parquet"}.get(output.lower().rsplit(".", 1)[-1])
    return named if named in formats else "jsonl"


def is_url(output: str) -> bool:
    """An fsspec URL (``s3://bucket/key``, ``file:///tmp/x``) rather than a local path."""
    return "://" in output


@contextlib.contextmanager
def open_output(output: str, binary: bool = False, live: bool = False, new: bool = False) -> Iterator[IO]:
    """Open where results go: stdout (``-``), a local file, or any fsspec URL when fsspec is installed.

    A local file is written beside and renamed into place when complete, unless ``live``: then it is
    written as it goes, so a reader sees it grow and an interrupted export keeps what it wrote.
    ``new`` refuses an existing file: ``--drain`` may leave the only copy of results there.
    An unwritable output is one line, not a traceback.
    """
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    try:
        if is_url(output):
            with _fsspec_open(output, mode, encoding) as out:
                yield out
        elif output != "-" and (live or new):
            with open(output, mode.replace("w", "x") if new else mode, encoding=encoding) as out:
                yield out
        else:
            with click.open_file(output, mode, encoding=encoding, atomic=output != "-") as out:
                yield out
    except FileExistsError:
        raise ConfigError(f"{output} exists: --drain writes only a new file, since what it deletes from Redis "
                          "may be only there") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or first_line(exc)}") from None


def _fsspec_open(output: str, mode: str, encoding: str | None):
    """``fsspec.open`` of a URL; a missing fsspec, protocol or filesystem package is one line."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"writing to {output} needs fsspec (pip install fsspec); without it -o takes "
                          "a local path or -") from None
    try:
        return fsspec.open(output, mode, **({"encoding": encoding} if encoding else {}))
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot write {output}: {first_line(exc)}") from None


def audit_option(command: Callable) -> Callable:
    """``--audit R``, shared by ``submit`` and ``label`` so both audit alike (checked by
    ``common.cascade.validate_audit_rate``, one line naming the option)."""
    return click.option("--audit", "audit", type=float, default=DEFAULT_AUDIT_RATE, show_default=True, metavar="R",
                        help="Also run tier 2 on a seeded random share R of the items tier 1 accepts, to estimate "
                             "their agreement with tier 2 (their labels stay tier 1's; 0 turns it off).")(command)


def target_options(command: Callable) -> Callable:
    """A job's quality target, shared by ``submit`` and ``label`` so that the same options and seed pick
    the same sample and threshold (checked together by ``common.target.quality_target``)."""
    options = [
        click.option("--max-disagreement", type=float, default=None, metavar="D",
                     help="Quality target instead of --threshold: at most this share of the items outside the "
                          "calibration sample get a tier-1 label the big model would not give, with probability "
                          "--confidence. The threshold is certified on a seeded sample of the corpus."),
        click.option("--max-drop", type=float, default=None, metavar="D",
                     help="As --max-disagreement, for the accuracy drop against the big model alone (a share; "
                          "needs a gold label on every sample item)."),
        click.option("--confidence", type=float, default=None, metavar="C",
                     help="Probability that the target holds, in (0.5, 1) [default: 0.9]."),
        click.option("--calibration", default=None, metavar="N|auto",
                     help="Items in the calibration sample; auto sizes it from the corpus, the target and the "
                          "tiers' cost [default: auto]."),
        click.option("--require-gain", is_flag=True,
                     help="Refuse a corpus too small to pay for its sample instead of running it all on tier 2."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def backend_option(command: Callable) -> Callable:
    """``--backend torch|onnx``, shared by every command that runs a model."""
    return click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
                        help="Run the models on torch, or on ONNX Runtime from an export made once and cached "
                             "beside the model (CPU; int8 where the command has --quantize); needs "
                             "pip install -e '.[onnx]'.")(command)


class ChunkSize(click.ParamType):
    """``auto`` (``None``: picked for the corpus) or a whole number of items from 1 to MAX_CHUNK_SIZE."""

    name = "chunk size"

    def convert(self, value, param, ctx) -> int | None:
        if value is None or str(value).strip().lower() == "auto":
            return None
        return click.IntRange(1, MAX_CHUNK_SIZE).convert(value, param, ctx)


def chunk_size_option(command: Callable) -> Callable:
    """``--chunk-size N|auto``, shared by ``submit`` and ``label`` so that both cut a corpus alike."""
    return click.option("--chunk-size", type=ChunkSize(), default="auto", show_default=True, metavar="N|auto",
                        help=f"Items per tier-1 task (1-{MAX_CHUNK_SIZE}). auto: the largest of up to "
                             f"{AUTO_CHUNK_MAX} that still cuts the job into {AUTO_CHUNKS} tasks (at least "
                             f"{AUTO_CHUNK_MIN}; for submit, at most --window); larger chunks pad less and cost "
                             "less per item.")(command)


def window_option(command: Callable) -> Callable:
    """``--window N``, shared by ``submit`` and ``resume``, the two commands that feed a job."""
    return click.option("--window", type=click.IntRange(min=0), default=DEFAULT_WINDOW, envvar=ENV_WINDOW,
                        show_default=True, metavar="N",
                        help="Keep at most N unanswered items of the job in Redis: the rest is queued as workers "
                             "answer, so this command runs until all but N are answered. 0 queues the whole "
                             f"corpus at once and returns, at the cost of Redis holding it [env {ENV_WINDOW}].")(command)


def redis_option(command: Callable) -> Callable:
    return click.option("--redis-url", default=None, metavar="URL",
                        help="Redis for broker and results [env TANGO_REDIS_URL; "
                             "default redis://localhost:6379/0].")(command)


@contextlib.contextmanager
def redis_errors(settings: ClusterSettings) -> Iterator[None]:
    """Turn a Redis that goes away mid-command into one line naming its (masked) URL."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(f"lost Redis at {settings.masked_url}: {first_line(exc)}") from None
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis at {settings.masked_url} failed: {first_line(exc)}") from None
