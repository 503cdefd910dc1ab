"""Bad input at `tango label`: one line naming the record or option, the same records refused as at
`tango submit` (they share the reader and its label check), and never a traceback from a real process."""
from __future__ import annotations

import json

import pytest

from cli.main import cli, run
from common.testing.cluster import run_tango

GOOD = b'{"id": "a", "text": "a fine film", "label": "positive"}\n'


def models(tiny_models) -> list[str]:
    return ["--small", str(tiny_models["small"]), "--big", str(tiny_models["big"])]


def label(tiny_models, path, out, *args: str) -> int:
    return run(cli, args=["label", str(path), *models(tiny_models), "-o", str(out), "--threads", "1", *args])


def test_a_threshold_out_of_range_names_label_s_own_option(tiny_models, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD)
    assert label(tiny_models, path, tmp_path / "out.jsonl", "--threshold", "0.2") == 2
    err = capsys.readouterr().err
    assert "--threshold must be between 0.5 and 1.0" in err and "confidence_threshold" not in err
    assert err.count("\n") == 1 and not (tmp_path / "out.jsonl").exists()


SHARED_REFUSALS = {  # line 2 of a .jsonl file: what both commands say about it
    "unknown gold label": (b'{"id": "b", "text": "meh", "label": "neutral"}',
                           "line 2: gold label 'neutral' is not one of the job's labels ['negative', 'positive']"),
    "boolean gold label": (b'{"id": "b", "text": "meh", "label": true}',
                           "line 2: field 'label' must be a string or an integer, got bool"),
    "float gold label": (b'{"id": "b", "text": "meh", "label": 1.0}',
                         "line 2: field 'label' must be a string or an integer, got float 1.0"),
    "lone surrogate in a text": (b'{"id": "b", "text": "bad \\udc80"}', "line 2: field 'text' holds a lone surrogate"),
    "lone surrogate in an id": (b'{"id": "\\udc80", "text": "fine"}', "line 2: field 'id' holds a lone surrogate"),
    "float id": (b'{"id": 1.0, "text": "fine"}', "line 2: field 'id' must be a string or an integer, got float 1.0"),
}


@pytest.mark.parametrize("case", sorted(SHARED_REFUSALS))
def test_label_and_submit_refuse_the_same_record_in_one_line(tiny_models, redis_server, redis_url, tmp_path,
                                                             capsys, case):
    record, message = SHARED_REFUSALS[case]
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD + record + b"\n" + b'{"id": "c", "text": "last", "label": 0}\n')
    out = tmp_path / "out.jsonl"
    assert label(tiny_models, path, out) == 2
    labelled = capsys.readouterr().err
    assert message in labelled and labelled.count("\n") == 1 and not out.exists()
    assert run(cli, args=["submit", str(path), *models(tiny_models), "--job-id", "j", "--redis-url", redis_url]) == 2
    submitted = capsys.readouterr().err
    assert message in submitted and submitted.count("\n") == 1
    assert redis_server.client().keys("*") == []
    skipped = ["submit", str(path), *models(tiny_models), "--job-id", "j", "--redis-url", redis_url, "--skip-invalid",
               "--window", "0"]
    assert run(cli, args=skipped) == 0
    assert "2 items" in capsys.readouterr().err  # the rest goes on


def test_label_gives_one_result_per_item_for_odd_but_valid_values(tiny_models, tmp_path):
    rows = [{"id": 7, "text": "nul \u0000 and bell \u0007", "label": 1},
            {"id": "\U0001F600", "text": "smile \U0001F600", "label": "NEGATIVE"},
            {"id": " padded ", "text": "x" * 40_000}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert label(tiny_models, path, out) == 0
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["7", "\U0001F600",
                                                                                                 "padded"]


BAD_FILES = {  # suffix: (content, what the line says)
    "jsonl": (GOOD + b'{"id": "b", "text": "x \\udc80"}\n', "line 2: field 'text' holds a lone surrogate"),
    "csv": (b"id,text\na,fine\nb,one,extra\n", "line 3: more fields than the header has"),
    "tsv": (b"id\ttext\na\tfine\nb\t\xff\xfe\n", "line 3: not valid UTF-8"),
    "txt": (b"fine\n\xc3\x28 broken\n", "line 2: not valid UTF-8"),
    "parquet": (b"PAR1 this is not a parquet footer PAR1", "not a readable parquet file"),
}


@pytest.mark.parametrize("fmt", sorted(BAD_FILES))
def test_the_real_cli_refuses_a_bad_file_of_each_format_in_one_line(tiny_models, tmp_path, fmt):
    content, message = BAD_FILES[fmt]
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(content)
    done = run_tango("label", str(path), *models(tiny_models), "-o", str(tmp_path / "out.jsonl"),
                     redis_url="redis://127.0.0.1:1/0", timeout=300)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_submit_skip_invalid_rejects_a_csv_row_with_an_extra_field_alone(redis_server, redis_url, tmp_path, capsys):
    from common.queue.broker import queued_chunks

    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\na,fine\nb,one,extra\nc,also fine\n")
    args = ["submit", str(path), "--labels", "neg,pos", "--job-id", "j", "--redis-url", redis_url, "--window", "0"]
    assert run(cli, args=args) == 2
    assert "line 3: more fields than the header has" in capsys.readouterr().err
    assert run(cli, args=[*args, "--skip-invalid"]) == 0
    assert "1 invalid records rejected" in capsys.readouterr().err
    queued = [item.id for chunk in queued_chunks(redis_server.client(), "tier1") for item in chunk.items]
    assert queued == ["a", "c"]
