"""The output format shared by `tango label` and `tango results`."""
from __future__ import annotations

import csv
import io
import json

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


def test_gold_labels_match_by_name_or_index():
    labels = ["negative", "positive"]
    assert gold_matches("Positive", "positive", labels)
    assert gold_matches("1", "positive", labels) and not gold_matches("0", "positive", labels)
    assert not gold_matches("7", "positive", labels)
    assert gold_matches("1", "1", ["0", "1"]) and not gold_matches("0", "1", ["0", "1"])
