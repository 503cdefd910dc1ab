"""Property-based checks of the corpus parser: whatever text goes in comes out, in order."""
from __future__ import annotations

import csv
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.data.corpus import CorpusSpec, read_corpus, summarize

# Any non-blank text; surrogates cannot be encoded as UTF-8 and so cannot be in a file.
texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).filter(str.strip)
tsv_texts = texts.map(lambda t: t.replace("\t", " ").replace("\n", " ").replace("\r", " ").replace("\x0b", " ")
                      .replace("\x0c", " ").replace("\x1c", " ").replace("\x1d", " ").replace("\x1e", " ")
                      .replace("\x85", " ").replace("\u2028", " ").replace("\u2029", " ")).filter(str.strip)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(st.tuples(texts, st.one_of(st.none(), texts)), min_size=1, max_size=20))
def test_jsonl_round_trip(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("c") / "in.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, **({"text_pair": p} if p else {})}) for t, p in rows),
                    encoding="utf-8")
    items = list(read_corpus(path))
    assert [(i.text, i.text_pair) for i in items] == rows
    assert [i.id for i in items] == [str(n) for n in range(1, len(rows) + 1)]  # ids default to line numbers


@SETTINGS
@given(st.lists(tsv_texts, min_size=1, max_size=20, unique=True))
def test_tsv_ids_and_texts_survive(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("c") / "in.tsv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id\ttext\n")
        for n, value in enumerate(values):
            handle.write(f"doc-{n}\t{value}\n")
    items = list(read_corpus(path))
    assert [i.id for i in items] == [f"doc-{n}" for n in range(len(values))]
    assert [i.text for i in items] == values


@SETTINGS
@given(st.lists(texts, min_size=1, max_size=20))
def test_csv_round_trip(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("c") / "in.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([v, "pos"] for v in values)
    items = list(read_corpus(path))
    assert [i.text for i in items] == values and all(i.label == "pos" for i in items)


@SETTINGS
@given(st.integers(min_value=1, max_value=50), st.integers(min_value=10, max_value=40))
def test_long_texts_are_cut_and_counted(tmp_path_factory, n_long, cap):
    path = tmp_path_factory.mktemp("c") / "in.jsonl"
    rows = [{"text": "x" * (cap + 1 + i)} for i in range(n_long)] + [{"text": "short"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = CorpusSpec(max_chars=cap)
    assert all(len(i.text) <= cap for i in read_corpus(path, spec))
    assert summarize(path, spec).truncated == n_long


BAD_RECORDS = [b'{"text": "unclosed\n', b'{"text": ""}\n', b'{"text": 7}\n', b'{"txt": "typo"}\n',
               b'{"text": "caf\xe9"}\n', b'[1, 2]\n']


@SETTINGS
@given(st.lists(st.one_of(texts.map(lambda t: ("good", t)), st.sampled_from(BAD_RECORDS).map(lambda b: ("bad", b))),
                min_size=1, max_size=30))
def test_skipping_invalid_records_keeps_every_good_one_in_order(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("c") / "in.jsonl"
    path.write_bytes(b"".join(json.dumps({"text": value}).encode() + b"\n" if kind == "good" else value
                              for kind, value in rows))
    rejected = []
    items = list(read_corpus(path, on_error=rejected.append))
    assert [i.text for i in items] == [value for kind, value in rows if kind == "good"]
    assert [e.line for e in rejected] == [n for n, (kind, _) in enumerate(rows, start=1) if kind == "bad"]
    assert all(f"line {e.line}:" in str(e) for e in rejected)
