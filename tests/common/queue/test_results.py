"""The output format shared by `tango label` and `tango results`."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.errors import ConfigError
from common.queue.results import ResultRecord, gold_matches, write_records

RECORDS = [ResultRecord("a", "positive", 0.93, 1, "small"), ResultRecord.failed("b", 2, "model error")]


def test_jsonl_has_one_object_per_item_and_round_trips():
    out = io.StringIO()
    assert write_records(RECORDS, out) == 2
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0]) == {"id": "a", "label": "positive", "score": 0.93, "tier": 1, "model": "small"}
    assert [ResultRecord.from_json(line) for line in lines] == RECORDS


def test_csv_has_a_header_and_empty_cells_for_a_failure():
    out = io.StringIO()
    write_records(RECORDS, out, "csv")
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["id", "label", "score", "tier", "model", "error"]
    assert rows[2] == ["b", "", "", "2", "", "model error"]


def test_parquet_has_one_row_per_item_with_typed_columns():
    out = io.BytesIO()
    assert write_records(RECORDS, out, "parquet") == 2
    assert pq.read_table(io.BytesIO(out.getvalue())).to_pylist() == [
        {"id": "a", "label": "positive", "score": 0.93, "tier": 1, "model": "small", "error": None},
        {"id": "b", "label": None, "score": None, "tier": 2, "model": None, "error": "model error"}]


def test_an_unknown_format_is_refused():
    with pytest.raises(ConfigError, match="use jsonl, csv, parquet"):
        write_records(RECORDS, io.StringIO(), "xml")


def test_gold_labels_match_by_name_or_index():
    labels = ["negative", "positive"]
    assert gold_matches("Positive", "positive", labels)
    assert gold_matches("1", "positive", labels) and not gold_matches("0", "positive", labels)
    assert not gold_matches("7", "positive", labels)
    assert gold_matches("1", "1", ["0", "1"]) and not gold_matches("0", "1", ["0", "1"])


@pytest.mark.parametrize("record", [
    ResultRecord("plain", "positive", 0.9, 1, "small"),
    ResultRecord('q"u\\o\nte \u00e9\u2028\x00', "n\u00e9g", 0.1 + 0.2, 2, "models/b\u00efg"),
    ResultRecord("tiny", "positive", 1e-07, 1, "m"),
    ResultRecord("odd", "positive", float("nan"), 1, "m"),
    ResultRecord("numpy", "positive", np.float64(0.5), 2, "m"),
    ResultRecord.failed("bad", 2, "tier 2 model error: boom"),
])
def test_a_record_spelled_out_is_byte_for_byte_what_the_encoder_writes(record):
    assert record.to_json() == json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))
    assert ResultRecord.from_json(record.to_json()).id == record.id


@pytest.mark.parametrize("record", [
    ResultRecord("\udc80", "positive", 0.9, 1, "small"),
    ResultRecord("caf\u00e9 \ud800", "positive", 0.9, 1, "small"),
    ResultRecord.failed("x", 1, "tier 1 model error: bad \udfff text"),
])
def test_a_record_with_a_lone_surrogate_is_written_as_utf8_and_reads_back_the_same(record):
    line = record.to_json()
    line.encode("utf-8")  # what redis-py does with it: a raw lone surrogate raises here
    assert ResultRecord.from_json(line) == record
