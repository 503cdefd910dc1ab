"""What a record's values may be: every id, text and gold label that passes here can reach Redis, the queue
and every output format unchanged, so anything they cannot carry is refused here, naming line and field."""
from __future__ import annotations

import json

import pytest

from common.data.corpus import MAX_NAME_CHARS, CorpusSpec, read_corpus, summarize
from common.errors import DataError


def write(path, lines: list[bytes]):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def refused(path, spec: CorpusSpec = CorpusSpec()) -> str:
    with pytest.raises(DataError) as caught:
        summarize(path, spec)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("record, message", [
    (b'{"id": "a", "text": "bad \\udc80 text"}', "line 2: field 'text' holds a lone surrogate '\\udc80'"),
    (b'{"id": "a", "text": "ok", "text_pair": "\\ud800"}', "line 2: field 'text_pair' holds a lone surrogate"),
    (b'{"id": "\\udc80", "text": "ok"}', "line 2: field 'id' holds a lone surrogate"),
    (b'{"id": "a", "text": "ok", "label": "\\udfff"}', "line 2: field 'label' holds a lone surrogate"),
])
def test_a_lone_surrogate_anywhere_is_refused_naming_line_and_field(tmp_path, record, message):
    path = write(tmp_path / "in.jsonl", [b'{"text": "fine"}', record, b'{"text": "last"}'])
    assert message in refused(path)


def test_skip_invalid_rejects_a_lone_surrogate_alone(tmp_path):
    path = write(tmp_path / "in.jsonl", [b'{"id": "a", "text": "fine"}', b'{"id": "\\udc80", "text": "x"}',
                                         b'{"id": "c", "text": "x \\udc80"}', b'{"id": "d", "text": "last"}'])
    summary = summarize(path, skip_invalid=True)
    assert (summary.items, [e.line for e in summary.rejects]) == (2, [2, 3])
    items = list(read_corpus(path, on_error=lambda error: None, duplicates=summary.duplicate_lines))
    assert [i.id for i in items] == ["a", "d"]
    for item in items:  # what is accepted can be encoded for Redis
        json.dumps(item._asdict(), ensure_ascii=False).encode("utf-8")


def test_a_surrogate_pair_is_one_character_and_accepted(tmp_path):
    path = write(tmp_path / "in.jsonl", [b'{"id": "\\ud83d\\ude00", "text": "smile \\ud83d\\ude00"}'])
    assert [(i.id, i.text) for i in read_corpus(path)] == [("\U0001F600", "smile \U0001F600")]


@pytest.mark.parametrize("raw_id, message", [
    (b"1.0", "field 'id' must be a string or an integer, got float 1.0"),
    (b"1e3", "field 'id' must be a string or an integer, got float 1000.0"),
    (b'{"a": 1}', "field 'id' must be a string or an integer, got dict"),
    (b"[1]", "field 'id' must be a string or an integer, got list"),
    (b"true", "field 'id' must be a string or an integer, got bool"),
])
def test_an_id_that_is_not_a_string_or_an_integer_is_refused(tmp_path, raw_id, message):
    path = write(tmp_path / "in.jsonl", [b'{"text": "fine"}', b'{"id": ' + raw_id + b', "text": "x"}'])
    assert f"line 2: {message}" in refused(path)


def test_integer_and_string_ids_are_one_id(tmp_path):
    path = write(tmp_path / "in.jsonl", [b'{"id": 7, "text": "x"}', b'{"id": -3, "text": "y"}'])
    assert [i.id for i in read_corpus(path)] == ["7", "-3"]
    path = write(tmp_path / "in.jsonl", [b'{"id": 7, "text": "x"}', b'{"id": "7", "text": "y"}'])
    assert "line 2: duplicate id '7'" in refused(path)


@pytest.mark.parametrize("raw_id, message", [
    (b'"a\\u0000b"', "field 'id' holds a control character '\\x00'"),
    (b'"a\\nb"', "field 'id' holds a control character '\\n'"),
    (b'"a\\tb"', "field 'id' holds a control character '\\t'"),
    (b'"a\\u0085b"', "field 'id' holds a control character '\\x85'"),
    (b'"' + b"x" * (MAX_NAME_CHARS + 1) + b'"', f"field 'id' is longer than {MAX_NAME_CHARS} characters"),
], ids=["nul", "newline", "tab", "c1", "too-long"])
def test_an_id_no_output_can_show_as_one_field_is_refused(tmp_path, raw_id, message):
    path = write(tmp_path / "in.jsonl", [b'{"text": "fine"}', b'{"id": ' + raw_id + b', "text": "x"}'])
    assert f"line 2: {message}" in refused(path)


def test_control_characters_in_a_text_are_carried(tmp_path):
    path = write(tmp_path / "in.jsonl", [b'{"id": "a", "text": "nul \\u0000 bell \\u0007 done"}'])
    assert [i.text for i in read_corpus(path)] == ["nul \x00 bell \x07 done"]


@pytest.mark.parametrize("label, message", [
    (b"1.0", "field 'label' must be a string or an integer, got float 1.0"),
    (b"true", "field 'label' must be a string or an integer, got bool"),
    (b'["pos"]', "field 'label' must be a string or an integer, got list"),
    (b'"p\\u0000s"', "field 'label' holds a control character"),
])
def test_a_gold_label_of_another_type_is_refused_with_or_without_a_label_set(tmp_path, label, message):
    path = write(tmp_path / "in.jsonl", [b'{"text": "fine", "label": 1}', b'{"text": "x", "label": ' + label + b'}'])
    for spec in (CorpusSpec(), CorpusSpec(labels=("neg", "pos"))):
        assert f"line 2: {message}" in refused(path, spec)


def test_integer_gold_labels_name_a_label_by_index(tmp_path):
    path = write(tmp_path / "in.jsonl", [b'{"text": "a", "label": 1}', b'{"text": "b", "label": "neg"}'])
    assert [i.label for i in read_corpus(path, CorpusSpec(labels=("neg", "pos")))] == ["1", "neg"]


def test_parquet_ids_of_another_type_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}), path)
    assert [i.id for i in read_corpus(path)] == ["1", "2"]
    pq.write_table(pa.table({"id": [1.5, 2.0], "text": ["a", "b"]}), path)
    assert "line 1: field 'id' must be a string or an integer, got float 1.5" in refused(path)
    pq.write_table(pa.table({"id": [b"raw"], "text": ["a"]}), path)
    assert "line 1: field 'id' must be a string or an integer, got bytes" in refused(path)
