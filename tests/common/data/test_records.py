import pytest

from common.errors import DataError
from common.data.records import detect_format, read_records


def test_line_numbers_point_at_the_file(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("sentence\tlabel\nfirst\t0\n\nthird\t1\n")
    assert [n for n, _ in read_records(path)] == [2, 4]


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        list(read_records(path))


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataError, match="line 2: malformed JSON"):
        list(read_records(path))


def test_extra_fields_in_a_tsv_row(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("sentence\tlabel\na\t0\textra\n")
    with pytest.raises(DataError, match="line 2: more fields"):
        list(read_records(path))


def test_format_from_suffix_or_flag(tmp_path):
    assert detect_format("x.JSONL") == "jsonl" and detect_format("x.data", "csv") == "csv"
    with pytest.raises(DataError, match="suffix"):
        detect_format("x.xlsx")
