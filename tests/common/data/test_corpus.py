"""The one corpus parser: every format, pairs, ids, gold labels, and bad lines named."""
from __future__ import annotations

import json

import pytest

from common.data.corpus import CorpusSpec, read_corpus, summarize
from common.errors import DataError


def items(path, **spec):
    return [(i.id, i.text, i.text_pair, i.label) for i in read_corpus(path, CorpusSpec(**spec))]


def test_jsonl_with_pairs_ids_and_labels(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "p1", "text": "a man sleeps", "text_pair": "a man rests", "label": "yes"})
                    + "\n\n" + json.dumps({"text": "it rains"}) + "\n", encoding="utf-8")
    assert items(path) == [("p1", "a man sleeps", "a man rests", "yes"), ("3", "it rains", None, None)]


def test_csv_with_named_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('doc,premise,hypothesis,gold\nd1,"a, b",c,entailment\nd2,x,y,\n', encoding="utf-8")
    got = items(path, text_column="premise", pair_column="hypothesis", id_column="doc", label_column="gold")
    assert got == [("d1", "a, b", "c", "entailment"), ("d2", "x", "y", None)]


def test_tsv_ids_default_to_the_line_number(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t0\n", encoding="utf-8")
    assert items(path, text_column="sentence") == [("2", "good", None, "1"), ("3", "bad", None, "0")]


def test_plain_text_is_one_item_per_non_blank_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("first\n\n  \nsecond line\n", encoding="utf-8")
    assert items(path) == [("1", "first", None, None), ("4", "second line", None, None)]


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["one", "two"]}), path)
    assert items(path) == [("x", "one", None, None), ("y", "two", None, None)]


def test_format_flag_overrides_the_suffix(tmp_path):
    path = tmp_path / "corpus.data"
    path.write_text('{"text": "hi"}\n', encoding="utf-8")
    assert items(path, fmt="jsonl") == [("1", "hi", None, None)]


@pytest.mark.parametrize("lines, message", [
    (['{"text": "ok"}', '{"text": "broken"'], "line 2: malformed JSON"),
    (['{"text": "ok"}', '{"id": "b"}'], "line 2: missing field 'text'"),
    (['{"text": "ok"}', '{"text": 5}'], "line 2: field 'text' must be a string"),
    (['{"text": "ok"}', '{"text": "   "}'], "line 2: field 'text' is empty"),
    (['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}'], "line 2: duplicate id 'a'"),
])
def test_a_bad_line_is_named(tmp_path, lines, message):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        summarize(path)


def test_an_unknown_column_names_the_columns_there(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("sentence\nhello\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no column 'text'.*\['sentence'\]"):
        summarize(path)


def test_summarize_counts_pairs_and_labels(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a", "text_pair": "b", "label": "x"}\n{"text": "c"}\n', encoding="utf-8")
    summary = summarize(path)
    assert (summary.items, summary.labelled) == (2, 1)
