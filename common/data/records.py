"""Read the rows of a data file as dicts, whatever its format, naming bad lines.

Every command that reads a file (GLUE evaluation, corpus labelling, training)
goes through ``read_records`` so formats and their errors behave the same.
Rows are streamed: a large corpus is never held whole by this module.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

from common.errors import DataError, first_line

FORMATS = ("jsonl", "csv", "tsv", "txt", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
             ".txt": "txt", ".text": "txt", ".parquet": "parquet", ".pq": "parquet"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The file's format from ``fmt`` or its suffix."""
    if fmt:
        if fmt not in FORMATS:
            raise DataError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{path}: cannot tell the format from the suffix {suffix!r}; "
                        f"name it .jsonl, .csv, .tsv, .txt or .parquet, or pass --format")
    return _SUFFIXES[suffix]


OnError = Callable[[DataError], None]


def read_records(path: str | Path, fmt: str | None = None, fieldnames: list[str] | None = None,
                 on_error: OnError | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, row)`` for every record of the file.

    Line numbers are 1-based lines of the file (rows for parquet), so an error
    can point at the exact place. ``fieldnames`` reads a header-less csv/tsv.
    With ``on_error``, a line that is not valid UTF-8 or (JSON Lines) not a JSON
    object is reported to it and skipped, since a generator that raised cannot go on.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "parquet":
        yield from _parquet(path, on_error)
        return
    lines = _decoded_lines(path, on_error)
    if fmt == "jsonl":
        yield from _jsonl(path, lines, on_error)
    elif fmt == "txt":
        for number, line in lines:
            text = line.rstrip("\r\n")
            if text.strip():
                yield number, {"text": text}
    else:
        yield from _delimited(path, lines, "\t" if fmt == "tsv" else ",", fieldnames, on_error)


def _decoded_lines(path: Path, on_error: OnError | None = None) -> Iterator[tuple[int, str]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                _report(DataError(f"{path}, line {number}: not valid UTF-8 ({exc.reason} at byte {exc.start})",
                                  number), on_error)
                continue
            yield number, text


def _jsonl(path: Path, lines: Iterable[tuple[int, str]], on_error: OnError | None) -> Iterator[tuple[int, dict]]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = _json_line(line)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, and what the parser itself cannot hold
            _report(DataError(f"{path}, line {number}: malformed JSON ({_json_error(exc)})", number), on_error)
            continue
        if not isinstance(row, dict):
            _report(DataError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}", number),
                    on_error)
            continue
        yield number, row


_scan_json = json.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def _json_line(line: str) -> str | dict | list | int | float | bool | None:
    """``json.loads(line)``, through the C scanner directly for a line that is one clean value.

    ``loads``'s Python layers cost more than the scan itself (bench/RESULTS.md, section (3)), and
    submit parses every line twice; anything unusual takes ``loads`` for its exact result or error.
    """
    try:
        value, end = _scan_json(line, 0)
    except (StopIteration, ValueError):
        return json.loads(line)
    if line[end:].strip(_JSON_SPACE):
        return json.loads(line)
    return value


def _json_error(exc: ValueError | RecursionError) -> str:
    """Why a line is not JSON Python can read: a syntax error, or valid JSON past Python's limits
    (an integer of more digits than ``int`` converts, arrays nested deeper than the recursion limit)."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    digits = re.search(r"value has (\d+) digits", str(exc))
    if digits:
        return f"a number of {digits.group(1)} digits, more than the {sys.get_int_max_str_digits()} Python reads"
    return first_line(exc)


def _report(error: DataError, on_error: OnError | None) -> None:
    """Raise ``error``, or hand it to ``on_error`` when the caller skips bad records."""
    if on_error is None:
        raise error
    on_error(error)


def _delimited(path: Path, lines: Iterable[tuple[int, str]], delimiter: str, fieldnames: list[str] | None,
               on_error: OnError | None) -> Iterator[tuple[int, dict]]:
    """The rows of a csv/tsv file. A row the csv module refuses, or one with more fields than the header,
    is reported alone: the reader goes on at the next line, so ``--skip-invalid`` keeps the rest."""
    last = [0]  # the line the reader took last (a quoted field may span several): only the latest is needed

    def text_lines() -> Iterator[str]:
        for number, line in lines:
            last[0] = number
            yield line

    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(text_lines(), fieldnames=fieldnames, delimiter=delimiter, quoting=quoting)
    try:
        reader.fieldnames  # reads the header: a bad one is the whole file's error
    except csv.Error as exc:
        raise DataError(f"{path}, line {last[0]}: {_csv_error(exc)}", last[0]) from None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            _report(DataError(f"{path}, line {last[0]}: {_csv_error(exc)}", last[0]), on_error)
            continue
        if None in row:
            _report(DataError(f"{path}, line {last[0]}: more fields than the header has", last[0]), on_error)
            continue
        if any((value or "").strip() for value in row.values()):
            yield last[0], row


def _csv_error(exc: csv.Error) -> str:
    """The csv module's complaint, in the file's terms: its hint about ``open`` means nothing to a user."""
    if "new-line character seen in unquoted field" in str(exc):
        return "a carriage return (\\r) inside an unquoted field; end lines with \\n or \\r\\n, or quote the field"
    return first_line(exc)


def _parquet(path: Path, on_error: OnError | None) -> Iterator[tuple[int, dict]]:
    """The rows of a parquet file. A value Python cannot hold (invalid UTF-8, a date past year 9999)
    is reported with its row; a file or row group pyarrow cannot decode stops the reading."""
    batches = _parquet_file(path).iter_batches()
    number = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # pyarrow's ArrowInvalid / OSError family on a corrupt page
            raise DataError(f"{path}: not a readable parquet file past row {number} ({first_line(exc)})",
                            number + 1) from None
        yield from _batch_rows(path, batch, number, on_error)
        number += batch.num_rows


def _batch_rows(path: Path, batch, before: int, on_error: OnError | None) -> Iterator[tuple[int, dict]]:
    """One record batch's rows, numbered after the ``before`` rows of earlier batches; converted whole,
    else (a value Python cannot hold) row by row, to name the row."""
    try:
        rows = batch.to_pylist()
    except Exception:  # noqa: BLE001 - pyarrow converts with Python's own constructors, which raise anything
        rows = None
    if rows is not None:
        yield from enumerate(rows, start=before + 1)
        return
    for offset in range(batch.num_rows):
        number = before + offset + 1
        try:
            row = batch.slice(offset, 1).to_pylist()[0]
        except UnicodeDecodeError as exc:
            _report(DataError(f"{path}, line {number}: not valid UTF-8 ({exc.reason} at byte {exc.start})", number),
                    on_error)
            continue
        except Exception as exc:  # noqa: BLE001 - as above
            _report(DataError(f"{path}, line {number}: a value Python cannot read ({first_line(exc)})", number),
                    on_error)
            continue
        yield number, row


def _parquet_file(path: Path):
    """``pq.ParquetFile(path)``, with anything it cannot read (not parquet, a corrupt footer) one line."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet needs pyarrow: pip install pyarrow") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid family, and OSError
        raise DataError(f"{path}: not a readable parquet file ({first_line(exc)})") from None


def header(path: str | Path, fmt: str | None = None) -> list[str] | None:
    """The column names of a csv/tsv/parquet file (None for jsonl and txt)."""
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        try:
            return list(_parquet_file(Path(path)).schema_arrow.names)
        except DataError:
            raise
        except Exception as exc:  # a schema pyarrow cannot map to Arrow
            raise DataError(f"{path}: not a readable parquet file ({first_line(exc)})") from None
    if fmt in ("csv", "tsv"):
        for _, line in _decoded_lines(Path(path)):
            try:
                return next(csv.reader([line], delimiter="\t" if fmt == "tsv" else ","), [])
            except csv.Error as exc:
                raise DataError(f"{path}, line 1: {_csv_error(exc)}", 1) from None
    return None
