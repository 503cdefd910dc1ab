"""Parse a corpus to label (JSON Lines, CSV/TSV, plain text, parquet) into items.

One parser for every command that reads a corpus (``label``, ``submit``,
``train --train-file``), so ids, columns and errors mean the same everywhere.
It streams: callers validate a whole file in one pass before enqueueing
anything, then read it again to send it, never holding it in memory. Duplicate
ids are found exactly without a set of every id (``common.data.dedup``): the
validating pass also collects the few ids that may repeat; where there are any,
it reads the file once more to decide them, and it hands the lines that do
repeat to the sending pass.

What a record may hold is decided here, once, for every command, so that whatever is accepted
reaches Redis, the queue and every output format unchanged:

- a text (and pair) is a non-blank string; control characters (NUL included) are kept, since
  JSON carries them escaped and the tokenizer drops them; a longer one is cut to ``max_chars``.
- an id is a string or an integer (JSON ``1`` and ``"1"`` are the one id ``1``, so they collide as
  duplicates); a float, boolean, object or array id is refused rather than spelled by Python
  (``1.0``, ``True``, ``{'a': 1}``), since no output could give it back. It is trimmed; a blank or
  missing one is the line number. It has no control characters (an id is one field of a CSV line
  and of a log line) and at most ``MAX_NAME_CHARS`` characters (it rides on every result).
- a gold label follows the rules of an id (integers name a label by index), and where the job's
  label set is known it must name one of them.
- no string holds a lone surrogate (valid JSON, ``"\\udc80"``): UTF-8 cannot encode it, so
  Redis could not store it and its job would never end.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Collection, Iterator, NamedTuple

from common.labels import gold_names
from common.errors import DataError
from common.data.dedup import IdProbe, RepeatedIds, possibly_repeated
from common.data.records import detect_format, header, read_records

# No 512-token model reads past a few thousand characters; cutting longer texts
# here keeps a 1 MB line from becoming a 1 MB queue message.
DEFAULT_MAX_CHARS = 32_768
MAX_NAME_CHARS = 1024  # an id or gold label names an item or a label; it is copied into every result
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
KEPT_REJECTS = 1000  # reasons kept of a file's bad records (memory, and the job's record); all are counted

Repeated = Callable[[int, str], bool]  # (line, id) -> whether an earlier record had the id; asked in file order


class DuplicateIdError(DataError):
    """A record whose id an earlier record had: ``summarize`` keeps its line for the sending pass."""


class Item(NamedTuple):
    """One text (or text pair) to classify, with its id and optional gold label. A tuple: submit
    builds one per record on each of its passes, and as frozen dataclasses these and the queue's
    items took a tenth of its CPU."""

    id: str
    text: str
    text_pair: str | None = None
    label: str | None = None
    line: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class CorpusSpec:
    """Where a file keeps its fields. Defaults fit ``{"text": ..., "text_pair": ...}`` JSONL."""

    fmt: str | None = None
    text_column: str = "text"
    pair_column: str | None = None  # None: use "text_pair" where a record has it
    id_column: str = "id"
    label_column: str = "label"
    max_items: int | None = None
    max_chars: int = DEFAULT_MAX_CHARS
    labels: tuple[str, ...] = ()  # when set, a gold label must name one of these (a job's label set)


@dataclass
class CorpusSummary:
    """What one validating pass over a corpus found."""

    items: int = 0
    labelled: int = 0
    truncated: int = 0
    rejected: int = 0
    rejects: list[DataError] = field(default_factory=list)  # the first KEPT_REJECTS of them
    duplicate_lines: set[int] = field(default_factory=set)  # pass to read_corpus(duplicates=...) on the same file

    def reject(self, error: DataError) -> None:
        self.rejected += 1
        if len(self.rejects) < KEPT_REJECTS:
            self.rejects.append(error)
        if isinstance(error, DuplicateIdError):
            self.duplicate_lines.add(error.line)


def read_corpus(path: str | Path, spec: CorpusSpec = CorpusSpec(),
                on_error: Callable[[DataError], None] | None = None,
                duplicates: Collection[int] | None = None) -> Iterator[Item]:
    """Yield the file's items in order; a bad record raises ``DataError`` naming its line.

    With ``on_error`` a bad record is reported to it and skipped instead, so a
    caller can record rejects and go on (``--skip-invalid``). ``duplicates`` are
    the lines whose id repeats an earlier record's (``CorpusSummary.duplicate_lines``
    of this file and spec), so a second pass need not look for them; without it
    they are looked for here, at the cost of one more streaming pass.
    """
    path = Path(path)
    fmt = _format(path, spec)
    repeated = _repeated_ids(path, fmt, spec) if duplicates is None else _listed(duplicates)
    yield from _items(path, fmt, spec, on_error, repeated)


def _items(path: Path, fmt: str, spec: CorpusSpec, on_error: Callable[[DataError], None] | None,
           repeated: Repeated) -> Iterator[Item]:
    count = 0
    for line, row in read_records(path, fmt, on_error=on_error):
        try:
            item = _item(row, line, spec, path, repeated)
        except DataError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        count += 1
        if spec.max_items is not None and count > spec.max_items:
            raise DataError(f"{path}, line {line}: item {count} is over the limit of {spec.max_items} items "
                            "per job (--max-items); split the corpus", line)
        yield item


def summarize(path: str | Path, spec: CorpusSpec = CorpusSpec(), skip_invalid: bool = False) -> CorpusSummary:
    """Validate the whole file and count what it holds, streaming. The validating pass also probes
    every id for a possible repeat: where none may repeat, that one pass was exact; where some may,
    the file is validated once more, deciding those few exactly (on a file too large for one probe,
    a candidate pass comes first instead). Its ``duplicate_lines`` spare the sending pass any search.

    Submit waits for this before it queues anything, while workers idle: a pass of a 300,000-item
    file is about a second."""
    path = Path(path)
    fmt = _format(path, spec)
    bound = _record_bound(path, fmt) if path.is_file() else 0
    if not IdProbe.fits(bound):
        return _validate(path, fmt, spec, skip_invalid, _repeated_ids(path, fmt, spec))
    probe = IdProbe(bound)
    try:
        summary = _validate(path, fmt, spec, skip_invalid, probe)
    except DataError:
        if not probe.hits():
            raise  # no id before the bad record repeats: the exact pass stops at the same record
    else:
        if not probe.hits():
            return summary
    return _validate(path, fmt, spec, skip_invalid, RepeatedIds(probe.hits()))


def _validate(path: Path, fmt: str, spec: CorpusSpec, skip_invalid: bool, repeated: Repeated) -> CorpusSummary:
    summary = CorpusSummary()
    for item in _items(path, fmt, spec, summary.reject if skip_invalid else None, repeated):
        summary.items += 1
        summary.labelled += item.label is not None
        summary.truncated += item.truncated
    if summary.items == 0:
        raise DataError(f"{path}: no items to label" + (f" ({summary.rejected} rejected)" if summary.rejected else ""))
    return summary


def _format(path: Path, spec: CorpusSpec) -> str:
    """The file's format, once its header (where it has one) holds the columns the spec names."""
    fmt = detect_format(path, spec.fmt)
    _check_columns(path, fmt, spec)
    return fmt


def _check_columns(path: Path, fmt: str, spec: CorpusSpec) -> None:
    columns = header(path, fmt) if path.is_file() else None
    if columns is None:
        return
    wanted = [spec.text_column] + ([spec.pair_column] if spec.pair_column else [])
    for column in wanted:
        if column not in columns:
            raise DataError(f"{path}, line 1: no column {column!r}; the header has {columns} "
                            "(choose with --text-column / --pair-column)", 1)


def _repeated_ids(path: Path, fmt: str, spec: CorpusSpec) -> Repeated:
    """The exact duplicate check for one reading of the file, after a pass that finds its candidates."""
    if not path.is_file():
        return _listed(())  # reading says so
    return RepeatedIds(possibly_repeated(lambda: _checked_ids(path, fmt, spec), _record_bound(path, fmt)))


def _listed(lines: Collection[int]) -> Repeated:
    return lambda line, item_id: line in lines


def _checked_ids(path: Path, fmt: str, spec: CorpusSpec) -> Iterator[str]:
    """The id of every record that reaches the duplicate check in ``_item``, in file order.

    A superset of what a reading pass reaches is as good: unreadable lines are skipped, and
    an error that stops every reading stops this too.
    """
    try:
        for line, row in read_records(path, fmt, on_error=_ignore):
            try:
                _texts(row, line, spec, path)
                item_id = _item_id(row, line, spec, path)
            except DataError:
                continue  # rejected before its id counts
            yield item_id
    except DataError:
        return


def _ignore(error: DataError) -> None:
    """Skip a record the candidate pass cannot read; the reading pass reports it."""


def _record_bound(path: Path, fmt: str) -> int:
    """At most how many records the file holds (its lines; a parquet file's rows), read cheaply
    before parsing so the duplicate filter is sized for the file."""
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # no pyarrow, or its own ArrowInvalid family: reading says what is wrong
            return 0
    with path.open("rb") as handle:
        return 1 + sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def _item(row: dict, line: int, spec: CorpusSpec, path: Path, repeated: Repeated) -> Item:
    text, pair = _texts(row, line, spec, path)
    item_id = _item_id(row, line, spec, path)
    if repeated(line, item_id):
        raise DuplicateIdError(f"{path}, line {line}: duplicate id {item_id!r}", line)
    label = _name(row, spec.label_column, path, line)
    if label is not None and spec.labels and _gold_name(label, spec.labels) is None:
        raise DataError(f"{path}, line {line}: gold label {label!r} is not one of the job's labels "
                        f"{list(spec.labels)}", line)
    cut = len(text) > spec.max_chars or (pair is not None and len(pair) > spec.max_chars)
    if cut:
        text, pair = text[:spec.max_chars], pair[:spec.max_chars] if pair is not None else None
    return Item(item_id, text, pair, label, line, cut)


@lru_cache(maxsize=256)
def _gold_name(label: str, labels: tuple[str, ...]) -> str | None:
    """``gold_names``, remembered: a corpus repeats a handful of labels on every record of every pass."""
    return gold_names(label, labels)


def _texts(row: dict, line: int, spec: CorpusSpec, path: Path) -> tuple[str, str | None]:
    """The text and pair, checked: a record they reject does not claim its id."""
    text = _text(row, spec.text_column, path, line, required=True)
    return text, _text(row, spec.pair_column or "text_pair", path, line, required=spec.pair_column is not None)


def _item_id(row: dict, line: int, spec: CorpusSpec, path: Path) -> str:
    return _name(row, spec.id_column, path, line) or str(line)


def _name(row: dict, column: str, path: Path, line: int) -> str | None:
    """An id or gold label as every output spells it (see the module's rules); None where blank.
    A short printable ASCII string or an integer, nearly every one, is passed by checks in C."""
    value = row.get(column)
    if type(value) is str:
        value = value.strip()
        if value.isascii() and value.isprintable() and len(value) <= MAX_NAME_CHARS:
            return value or None
    elif value is None:
        return None
    elif type(value) is int:  # no larger than the readers' ints: JSON's of up to 4300 digits, parquet's int64
        value = str(value)
        if len(value) <= MAX_NAME_CHARS:
            return value
    return _checked_name(value, column, path, line)


def _checked_name(value: object, column: str, path: Path, line: int) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(int(value))
    elif not isinstance(value, str):
        got = f"float {value!r}" if isinstance(value, float) else type(value).__name__
        raise DataError(f"{path}, line {line}: field {column!r} must be a string or an integer, got {got}", line)
    value = value.strip()
    if len(value) > MAX_NAME_CHARS:
        raise DataError(f"{path}, line {line}: field {column!r} is longer than {MAX_NAME_CHARS} characters", line)
    control = _CONTROL.search(value)
    if control:
        raise DataError(f"{path}, line {line}: field {column!r} holds a control character {control.group()!r}", line)
    _check_encodable(value, column, path, line)
    return value or None


def _check_encodable(value: str, column: str, path: Path, line: int) -> None:
    """Refuse a lone surrogate: JSON spells one (``"\\udc80"``), but no UTF-8 store can hold it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{path}, line {line}: field {column!r} holds a lone surrogate {value[exc.start]!r} "
                        f"at character {exc.start + 1}, which UTF-8 cannot encode", line) from None


def _text(row: dict, column: str, path: Path, line: int, required: bool) -> str | None:
    """A text field, checked; the error's place is formatted only on error (it ran twice per item per pass)."""
    value = row.get(column)
    if value is None:
        if required:
            raise DataError(f"{path}, line {line}: missing field {column!r}", line)
        return None
    if not isinstance(value, str):
        raise DataError(f"{path}, line {line}: field {column!r} must be a string, got {type(value).__name__}", line)
    if not value.strip():
        raise DataError(f"{path}, line {line}: field {column!r} is empty", line)
    if not value.isascii():
        _check_encodable(value, column, path, line)
    return value
