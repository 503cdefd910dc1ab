"""Files the readers once met with a traceback or refused whole: each is now one line naming the record, and
with ``--skip-invalid`` that record alone is rejected. Several were found by ``test_fuzz_readers``."""
from __future__ import annotations

import pytest

from common.data.corpus import CorpusSpec, read_corpus, summarize
from common.errors import DataError
from tests.common.data.test_corpus_values import refused  # one line, naming the file


def kept(path, spec: CorpusSpec = CorpusSpec()) -> tuple[list[str], list[int]]:
    """The ids that --skip-invalid keeps, and the lines it rejects; both passes must agree."""
    summary = summarize(path, spec, skip_invalid=True)
    rejected: list[DataError] = []
    ids = [item.id for item in read_corpus(path, spec, rejected.append, summary.duplicate_lines)]
    assert len(ids) == summary.items and [e.line for e in rejected] == [e.line for e in summary.rejects]
    return ids, [e.line for e in summary.rejects]


def test_a_csv_row_with_an_extra_field_is_rejected_alone(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\na,fine\nb,bad,extra\nc,also fine\n")
    assert "line 3: more fields than the header has" in refused(path)
    assert kept(path) == (["a", "c"], [3])


def test_a_tsv_row_with_an_extra_field_is_rejected_alone(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_bytes(b"id\ttext\na\tfine\nb\tbad\textra\nc\talso fine\n")
    assert kept(path) == (["a", "c"], [3])


def test_a_bare_carriage_return_in_a_csv_row_is_rejected_alone(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\na,fine\nb,one\rtwo\nc,also fine\n")
    assert "line 3: a carriage return (\\r) inside an unquoted field" in refused(path)
    assert kept(path) == (["a", "c"], [3])


def test_a_bare_carriage_return_in_a_csv_header_is_one_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,te\rxt\na,fine\n")
    assert "line 1:" in refused(path)


@pytest.mark.parametrize("value, message", [
    (b"1" * 5000, "line 2: malformed JSON (a number of 5000 digits"),
    (b"[" * 100_000 + b"]" * 100_000, "line 2: malformed JSON (nested too deeply)"),
], ids=["huge-integer", "deep-nesting"])
def test_json_that_python_cannot_parse_is_a_malformed_line(tmp_path, value, message):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "x", "id": ' + value + b'}\n{"text": "last"}\n')
    assert message in refused(path)
    assert kept(path) == (["1", "3"], [2])


@pytest.mark.parametrize("content", [b"", b"PAR1", b"PAR1garbagePAR1", b"not parquet at all"])
def test_a_file_that_is_not_parquet_is_one_line(tmp_path, content):
    path = tmp_path / "in.parquet"
    path.write_bytes(content)
    assert "not a readable parquet file" in refused(path)
    with pytest.raises(DataError, match="not a readable parquet file"):
        summarize(path, skip_invalid=True)


def test_a_parquet_value_python_cannot_hold_names_its_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    days = pa.array([0, 2**31 - 1, 1], type=pa.int32()).cast(pa.date32())  # day 2**31-1 is past year 9999
    pq.write_table(pa.table({"text": ["a", "b", "c"], "when": days}), path)
    assert "line 2: " in refused(path)
    assert kept(path) == (["1", "3"], [2])


def test_parquet_with_invalid_utf8_in_a_string_column_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    data = b"ok" + b"\xff\xfe" + b"fine"
    offsets = pa.array([0, 2, 4, 8], type=pa.int32()).buffers()[1]
    texts = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(data)])
    pq.write_table(pa.table({"text": texts}), path)
    message = refused(path)
    assert "UTF-8" in message or "UTF8" in message
