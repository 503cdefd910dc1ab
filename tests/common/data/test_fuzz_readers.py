"""Fuzz the corpus readers: any bytes as a jsonl, csv, tsv, txt or parquet corpus are either refused in one
line naming the file (and the record, where one is to blame) or accepted; and what is accepted crosses the
queue unchanged and is labelled, one result per item, by the path ``tango label`` runs (a tiny cascade).

Examples per test are bounded for CI; ``TANGO_FUZZ_EXAMPLES=N`` runs N per test instead (the bench mode).
"""
from __future__ import annotations

import csv
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.queue.inprocess import Tally, label_items
from common.data.corpus import CorpusSpec, read_corpus, summarize
from common.errors import DataError, TangoError
from common.queue.messages import Chunk, WorkItem
from common.queue.results import write_records

LABELS = ("negative", "positive")
EXAMPLES = int(os.environ.get("TANGO_FUZZ_EXAMPLES", "0"))
SPECS = [CorpusSpec(labels=LABELS), CorpusSpec(), CorpusSpec(pair_column="text_pair", labels=LABELS),
         CorpusSpec(max_chars=40, max_items=4), CorpusSpec(id_column="text", label_column="id")]


def fuzz(examples: int):
    """Hypothesis settings for ``examples`` examples in CI, or the bench mode's count."""
    return settings(max_examples=EXAMPLES or examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def cascade(tiny_models):
    from common.cascade import Cascade
    from common.labels import align_labels
    from common.ml.models import load_tier

    small, big = load_tier(str(tiny_models["small"]), batch_size=8), load_tier(str(tiny_models["big"]), batch_size=8)
    return Cascade(small, big, 0.6, align_labels(small.labels, big.labels))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check(cascade, path, content: bytes, spec: CorpusSpec) -> None:
    """The contract, for one file and spec, with and without ``--skip-invalid``."""
    path.write_bytes(content)
    accepted = None
    for skip in (False, True):
        try:
            summary = summarize(path, spec, skip_invalid=skip)
        except TangoError as exc:
            assert_one_line(exc, path)
            assert not skip or accepted is None  # what is valid whole is valid when skipping too
            continue
        rejected: list[DataError] = []
        items = list(read_corpus(path, spec, rejected.append if skip else None, summary.duplicate_lines))
        assert len(items) == summary.items > 0
        assert [e.line for e in rejected] == [e.line for e in summary.rejects]
        for error in summary.rejects:
            assert_one_line(error, path)
            assert isinstance(error.line, int) and f"line {error.line}:" in str(error)
        if not skip:
            accepted = items
        else:
            assert accepted is None or (items == accepted and not summary.rejected)  # valid: nothing to skip
        carried(items)
        labelled(cascade, items)


def assert_one_line(error: BaseException, path) -> None:
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert str(path) in message, message
    message.encode("utf-8")  # printable on any terminal the CLI writes to


def carried(items) -> None:
    """Every accepted item crosses the queue (JSON in UTF-8, as Redis stores it) and comes back the same."""
    work = tuple(WorkItem(n, i.id, i.text, i.text_pair, i.label) for n, i in enumerate(items))
    for first in range(0, len(work), 1000):
        chunk = Chunk("fuzz", first, 1, 0.9, LABELS, work[first:first + 1000])
        raw = json.dumps(chunk.encode(), ensure_ascii=False).encode("utf-8")
        assert Chunk.decode(json.loads(raw)) == chunk
    for item in items:
        assert item.id and item.id == item.id.strip() and item.text.strip()


def labelled(cascade, items) -> None:
    """``tango label``'s own loop and writers: one result per item, in order, each output format readable."""
    records = list(label_items(cascade, iter(items), ("small", "big"), Tally(), 3))
    ids = [item.id for item in items]
    assert [r.id for r in records] == ids and all(r.label in LABELS for r in records)
    for fmt in ("jsonl", "csv"):
        raw = io.BytesIO()
        with io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="") as out:
            assert write_records(records, out, fmt) == len(items)
            out.flush()
            text = raw.getvalue().decode("utf-8")
        if fmt == "jsonl":
            assert [json.loads(line)["id"] for line in text.splitlines()] == ids
        else:
            assert [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))] == ids
    raw = io.BytesIO()
    write_records(records, raw, "parquet")
    import pyarrow.parquet as pq

    assert pq.read_table(io.BytesIO(raw.getvalue())).column("id").to_pylist() == ids


# --- any bytes -----------------------------------------------------------------------------------------------

@fuzz(40)
@given(content=st.binary(max_size=600), fmt=st.sampled_from(["jsonl", "csv", "tsv", "txt", "parquet"]),
       spec=st.sampled_from(SPECS))
def test_any_bytes_in_any_format(cascade, workdir, content, fmt, spec):
    check(cascade, workdir / f"bytes.{fmt}", content, spec)


# --- near-valid JSON Lines -------------------------------------------------------------------------------------

any_text = st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
                   max_size=12)  # lone surrogates included, which JSON spells as escapes
odd_strings = st.one_of(any_text, st.sampled_from(["", " ", "\udc80", "a\u0000b", "\ud83d\ude00", "1", "1.0",
                                                    "negative", "POSITIVE", "\ufeffx", "a\nb", "\u2028", "x" * 70]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True), odd_strings)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(odd_strings, inner, max_size=3)), max_leaves=6)
records = st.fixed_dictionaries({}, optional={"id": values, "text": st.one_of(odd_strings, values),
                                              "text_pair": st.one_of(odd_strings, values), "label": values})
odd_lines = st.sampled_from([b"", b"   ", b"\xef\xbb\xbf{\"text\": \"bom\"}", b"{\"text\": \"caf\xe9\"}",
                             b"{\"text\": \"nul\x00\"}", b"{\"text\": \"x\"", b"[1, 2]", b"null", b"\x00",
                             b"{\"text\": \"x\", \"id\": " + b"9" * 5000 + b"}",
                             b"{\"text\": \"x\", \"id\": " + b"[" * 5000 + b"]" * 5000 + b"}",
                             b"{\"text\": \"" + b"y" * 70_000 + b"\"}", b"{\"text\": NaN}", b"{\"text\": \"a\"}{}"])
json_lines = st.one_of(records.map(lambda r: json.dumps(r).encode()),
                       records.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
                       odd_lines)


@fuzz(60)
@given(lines=st.lists(json_lines, max_size=8), ending=st.sampled_from([b"\n", b"\r\n"]), bom=st.booleans(),
       spec=st.sampled_from(SPECS))
def test_near_valid_json_lines(cascade, workdir, lines, ending, bom, spec):
    check(cascade, workdir / "near.jsonl", (b"\xef\xbb\xbf" if bom else b"") + ending.join(lines), spec)


# --- near-valid CSV and TSV ------------------------------------------------------------------------------------

columns = st.lists(st.sampled_from(["id", "text", "label", "text_pair", "other", "", "te\"xt", "\ufefftext"]),
                   min_size=1, max_size=4)
field = st.one_of(st.text(st.characters(codec="utf-8"), max_size=10),
                  st.sampled_from(["", "a,b", 'say "hi"', '"quoted"', '"open', "a\tb", "line\nbreak", "cr\rhere",
                                   "nul\x00", "negative", "1", "1.0", "\ufeff", "z" * 70_000]))


@st.composite
def delimited(draw, delimiter: str) -> bytes:
    header = draw(columns)
    rows = draw(st.lists(st.lists(field, min_size=max(len(header) - 1, 0), max_size=len(header) + 1), max_size=6))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote_all = draw(st.booleans())
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending,
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode("utf-8")
    if draw(st.booleans()):  # a stray byte somewhere: invalid UTF-8, a NUL, a quote, a bare CR
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\x00", b'"', b"\r", b"\xc3"])) + data[at:]
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + data


@fuzz(60)
@given(data=st.one_of(delimited(",").map(lambda d: ("csv", d)), delimited("\t").map(lambda d: ("tsv", d))),
       spec=st.sampled_from(SPECS))
def test_near_valid_csv_and_tsv(cascade, workdir, data, spec):
    fmt, content = data
    check(cascade, workdir / f"near.{fmt}", content, spec)


# --- plain text ------------------------------------------------------------------------------------------------

txt_lines = st.one_of(st.text(st.characters(codec="utf-8"), max_size=20).map(lambda t: t.encode("utf-8")),
                      st.sampled_from([b"\xff\xfe", b"\x00", b"\r", b"\xef\xbb\xbfbom", b"\x0c", b"q" * 70_000]))


@fuzz(30)
@given(lines=st.lists(txt_lines, max_size=8), ending=st.sampled_from([b"\n", b"\r\n"]), spec=st.sampled_from(SPECS))
def test_near_valid_text(cascade, workdir, lines, ending, spec):
    check(cascade, workdir / "near.txt", ending.join(lines), spec)


# --- parquet ---------------------------------------------------------------------------------------------------

@st.composite
def parquet_column(draw, rows: int):
    import datetime

    import pyarrow as pa

    kind = draw(st.sampled_from(["string", "large_string", "binary", "int", "float", "bool", "list", "struct", "null",
                                 "dictionary", "date", "bad_utf8", "timestamp"]))
    strings = st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=8),
                        st.sampled_from(["", " ", "negative", "1", "nul\x00"]))
    if kind in ("string", "large_string", "dictionary"):
        array = pa.array(draw(st.lists(strings, min_size=rows, max_size=rows)),
                         type=pa.large_string() if kind == "large_string" else pa.string())
        return array.dictionary_encode() if kind == "dictionary" else array
    if kind == "binary":
        return pa.array(draw(st.lists(st.one_of(st.none(), st.binary(max_size=6)), min_size=rows, max_size=rows)),
                        type=pa.binary())
    if kind == "int":
        return pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), min_size=rows,
                                      max_size=rows)), type=pa.int64())
    if kind == "float":
        return pa.array(draw(st.lists(st.one_of(st.none(), st.floats()), min_size=rows, max_size=rows)),
                        type=pa.float64())
    if kind == "bool":
        return pa.array(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=rows, max_size=rows)))
    if kind == "list":
        return pa.array(draw(st.lists(st.one_of(st.none(), st.lists(strings, max_size=2)), min_size=rows,
                                      max_size=rows)), type=pa.list_(pa.string()))
    if kind == "struct":
        return pa.array([{"text": draw(strings)} for _ in range(rows)], type=pa.struct([("text", pa.string())]))
    if kind == "null":
        return pa.nulls(rows)
    if kind == "date":
        days = draw(st.lists(st.integers(-2**31, 2**31 - 1), min_size=rows, max_size=rows))
        return pa.array(days, type=pa.int32()).cast(pa.date32())
    if kind == "timestamp":
        return pa.array([datetime.datetime(2020, 1, 1)] * rows, type=pa.timestamp("us", tz="UTC"))
    chunks = draw(st.lists(st.sampled_from([b"ok", b"\xff", b"\xed\xa0\x80", b"\xc3", b"x"]), min_size=rows,
                           max_size=rows))  # bad_utf8: strings arrow was never asked to check
    offsets = [0]
    for chunk in chunks:
        offsets.append(offsets[-1] + len(chunk))
    buffer = pa.array(offsets, type=pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.string(), rows, [None, buffer, pa.py_buffer(b"".join(chunks))])


@st.composite
def parquet_files(draw) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = draw(st.integers(0, 5))
    names = draw(st.lists(st.sampled_from(["id", "text", "label", "text_pair", "other"]), min_size=1, max_size=4,
                          unique=True))
    table = pa.table({name: draw(parquet_column(rows)) for name in names})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=draw(st.sampled_from([1, 2, 64])))
    data = out.getvalue()
    if draw(st.booleans()):  # a corrupted copy: flipped bytes, or cut short
        if draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
        else:
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data


@fuzz(40)
@given(content=parquet_files(), spec=st.sampled_from(SPECS))
def test_near_valid_parquet(cascade, workdir, content, spec):
    check(cascade, workdir / "near.parquet", content, spec)
