"""The one corpus parser: every format, pairs, ids, gold labels, and bad lines named."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.data import corpus, dedup
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


@pytest.fixture(params=["shipped filter", "one-byte filter", "one-byte probe"])
def any_filter(request, monkeypatch):
    """The duplicate filter as shipped, one so small that every id is a false positive (which no
    probe fits, so a candidate pass runs first), and a probe that small: what the parser says must
    not depend on either."""
    if request.param == "one-byte filter":
        monkeypatch.setattr(dedup, "MAX_BITS", 8)
        monkeypatch.setattr(dedup, "ROUND_IDS", 10**9)
    if request.param == "one-byte probe":
        monkeypatch.setattr(dedup, "MIN_BITS", 8)
        monkeypatch.setattr(dedup, "PROBE_BITS_PER_ID", 0)


def jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def skip(error):
    pass


@pytest.mark.parametrize("name, content, line", [
    ("in.jsonl", '{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n\n{"id": "b", "text": "four"}\n', 4),
    ("in.tsv", "id\ttext\na\tone\nb\ttwo\nc\tthree\nb\tfour\n", 5),
    ("in.csv", 'id,text\na,one\n b ,"two, too"\nc,three\nb,four\n', 5),
])
def test_a_duplicate_id_is_named_at_its_second_line(tmp_path, any_filter, name, content, line):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    for read in (summarize, lambda p: list(read_corpus(p))):
        with pytest.raises(DataError, match=rf"line {line}: duplicate id 'b'$") as caught:
            read(path)
        assert caught.value.line == line


def test_a_valid_file_is_accepted_whatever_the_filter(tmp_path, any_filter):
    path = jsonl(tmp_path / "in.jsonl", [{"id": f"doc-{n:06d}", "text": "t"} for n in range(500)])
    summary = summarize(path)
    assert (summary.items, summary.duplicate_lines) == (500, set())
    assert len(list(read_corpus(path, duplicates=summary.duplicate_lines))) == 500


@pytest.mark.parametrize("ids, passes", [(["a", "b", "c"], 1), (["a", "b", "a"], 2)])
def test_summarize_reads_a_file_again_only_where_an_id_may_repeat(tmp_path, monkeypatch, ids, passes):
    reads = []
    real = corpus.read_records
    monkeypatch.setattr(corpus, "read_records", lambda *args, **kwargs: reads.append(1) or real(*args, **kwargs))
    summary = summarize(jsonl(tmp_path / "in.jsonl", [{"id": i, "text": "t"} for i in ids]), skip_invalid=True)
    assert len(reads) == passes and summary.items == len(set(ids))


def test_skip_invalid_drops_each_later_occurrence_and_the_send_pass_agrees(tmp_path, any_filter):
    ids = ["a", "b", "b", "c", "a", "b"]
    path = jsonl(tmp_path / "in.jsonl", [{"id": i, "text": "t"} for i in ids])
    summary = summarize(path, skip_invalid=True)
    assert (summary.items, summary.duplicate_lines) == (3, {3, 5, 6})
    assert [str(error) for error in summary.rejects] == [f"{path}, line {n}: duplicate id {ids[n - 1]!r}"
                                                         for n in (3, 5, 6)]
    found = [(i.id, i.line) for i in read_corpus(path, CorpusSpec(), skip)]
    given_lines = [(i.id, i.line) for i in read_corpus(path, CorpusSpec(), skip, duplicates=summary.duplicate_lines)]
    assert found == given_lines == [("a", 1), ("b", 2), ("c", 4)]


@pytest.mark.parametrize("rows, line, item_id", [
    ([{"text": "x"}, {"id": "1", "text": "y"}], 2, "1"),  # line 1's id defaults to "1"
    ([{"id": "2", "text": "x"}, {"text": "y"}], 2, "2"),  # line 2's default id was taken by line 1
    ([{"id": " ", "text": "x"}, {"id": 1, "text": "y"}], 2, "1"),  # a blank id defaults too
])
def test_an_id_equal_to_a_default_id_is_a_duplicate(tmp_path, any_filter, rows, line, item_id):
    with pytest.raises(DataError, match=rf"line {line}: duplicate id '{item_id}'"):
        summarize(jsonl(tmp_path / "in.jsonl", rows))


def test_only_records_that_pass_their_text_checks_claim_an_id(tmp_path, any_filter):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": " "}\n{"id": "a", "text": "x"\n{"id": "a", "text": "y", "label": "maybe"}\n'
                    '{"id": "a", "text": "z", "label": "pos"}\n{"id": "b", "text": "w"}\n', encoding="utf-8")
    summary = summarize(path, CorpusSpec(labels=("pos", "neg")), skip_invalid=True)
    # blank text and broken JSON claim nothing; a wrong gold label is checked after the id, so it claims "a"
    assert [error.line for error in summary.rejects] == [1, 2, 3, 4] and summary.duplicate_lines == {4}


def expected(rows: list[dict]) -> tuple[list[tuple[str, int]], list[int], set[int]]:
    """What the parser did with a set of every id: kept (id, line), rejected lines, duplicate lines."""
    seen, kept, rejected, duplicates = set(), [], [], set()
    for line, row in enumerate(rows, 1):
        item_id = (row.get("id") or "").strip() or str(line)
        if not row.get("text", "").strip() or item_id in seen:
            rejected.append(line)
            duplicates.update([line] if row.get("text", "").strip() else [])
            continue
        seen.add(item_id)
        if row.get("label") not in (None, "pos", "neg"):
            rejected.append(line)
            continue
        kept.append((item_id, line))
    return kept, rejected, duplicates


rows = st.lists(st.fixed_dictionaries({}, optional={"id": st.sampled_from(["a", "b", "1", "2", "3", " "]),
                                                    "text": st.sampled_from(["x", " "]),
                                                    "label": st.sampled_from(["pos", "neg", "bad"])}), max_size=12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_duplicates_are_exactly_what_a_set_of_every_id_finds(tmp_path_factory, any_filter, rows):
    path = jsonl(tmp_path_factory.mktemp("c") / "in.jsonl", rows)
    spec = CorpusSpec(labels=("pos", "neg"))
    kept, rejected, duplicates = expected(rows)
    assert [(i.id, i.line) for i in read_corpus(path, spec, skip)] == kept
    if kept:
        summary = summarize(path, spec, skip_invalid=True)
        assert ([e.line for e in summary.rejects], summary.duplicate_lines) == (rejected, duplicates)
        assert [(i.id, i.line) for i in read_corpus(path, spec, skip, duplicates=summary.duplicate_lines)] == kept
    if rejected:
        with pytest.raises(DataError) as caught:
            summarize(path, spec)
        assert caught.value.line == rejected[0]
        assert ("duplicate id" in str(caught.value)) == (rejected[0] in duplicates)
