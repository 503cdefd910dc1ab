import json

import pytest

from common.errors import DataError
from common.data.glue import TASKS, get_task, gold_label_ids, load_eval_data, positive_label_id, read_task_file
from common.labels import align_labels


def test_sst2_dev_from_data_dir(glue_dir):
    data = load_eval_data("sst2", data_dir=str(glue_dir))
    assert len(data) == 872 and data.pairs is None
    assert set(data.raw_labels) == {"0", "1"}


def test_rte_is_a_pair_task_with_string_labels(glue_dir):
    data = load_eval_data("rte", data_dir=str(glue_dir))
    assert len(data) == 139 and len(data.pairs) == 139
    assert set(data.raw_labels) == {"entailment", "not_entailment"}
    # models with generic names fall back to the task's own label order
    ids = gold_label_ids(data, align_labels(["LABEL_0", "LABEL_1"], ["LABEL_0", "LABEL_1"]))
    assert ids.tolist() == [0 if v == "entailment" else 1 for v in data.raw_labels]


def test_string_labels_map_through_the_models_names(glue_dir):
    data = load_eval_data("rte", data_dir=str(glue_dir))
    alignment = align_labels(["not_entailment", "entailment"], ["not_entailment", "entailment"])
    ids = gold_label_ids(data, alignment)
    assert ids.tolist() == [1 if v == "entailment" else 0 for v in data.raw_labels]


def test_numeric_labels_follow_the_task_names_when_the_model_orders_them_differently():
    data = read_task_file(get_task("sst2"), _write("x.jsonl", [{"sentence": "s", "label": 1}]))
    assert gold_label_ids(data, align_labels(["positive", "negative"], ["positive", "negative"])).tolist() == [0]


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_validation_file_formats(suffix, tmp_path):
    rows = [{"sentence1": f"premise {i}", "sentence2": f"hypothesis {i}", "label": "entailment"} for i in range(5)]
    path = tmp_path / f"dev.{suffix}"
    if suffix == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif suffix == "csv":
        path.write_text("sentence1,sentence2,label\n" + "\n".join(f"{r['sentence1']},{r['sentence2']},{r['label']}" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    data = load_eval_data("rte", validation_file=str(path))
    assert data.texts[3] == "premise 3" and data.pairs[3] == "hypothesis 3" and len(data) == 5


def test_mnli_aliases_and_headerless_cola(tmp_path):
    mnli = tmp_path / "mnli"
    mnli.mkdir()
    (mnli / "dev_matched.tsv").write_text("sentence1\tsentence2\tgold_label\np\th\tneutral\n")
    data = load_eval_data("mnli", data_dir=str(tmp_path))
    assert data.texts == ["p"] and data.pairs == ["h"] and data.raw_labels == ["neutral"]
    cola = tmp_path / "cola"
    cola.mkdir()
    (cola / "dev.tsv").write_text("gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n")
    assert load_eval_data("cola", data_dir=str(tmp_path)).raw_labels == ["1"]


def test_missing_column_names_the_column(tmp_path):
    path = _write("bad.jsonl", [{"sentence1": "a", "label": "entailment"}], tmp_path)
    with pytest.raises(DataError, match="sentence2"):
        load_eval_data("rte", validation_file=str(path))


def test_bad_record_is_named(tmp_path):
    path = _write("bad.jsonl", [{"sentence": "a", "label": 0}, {"sentence": "", "label": 1}], tmp_path)
    with pytest.raises(DataError, match="line 2"):
        load_eval_data("sst2", validation_file=str(path))


def test_unknown_gold_label_names_the_record(tmp_path):
    data = read_task_file(get_task("sst2"), _write("x.jsonl", [{"sentence": "s", "label": "meh"}], tmp_path))
    with pytest.raises(DataError, match="record 1.*'meh'"):
        gold_label_ids(data, align_labels(["negative", "positive"], ["negative", "positive"]))


def test_unknown_task_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="unknown task"):
        get_task("imdb")
    with pytest.raises(DataError, match="no dev.tsv"):
        load_eval_data("sst2", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="no such file"):
        load_eval_data("sst2", validation_file=str(tmp_path / "missing.tsv"))


def test_every_glue_task_is_known():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert TASKS["mnli"].hub_split == "validation_matched"
    assert positive_label_id(TASKS["mrpc"], align_labels(["equivalent", "not_equivalent"], ["equivalent", "not_equivalent"])) == 0


def _write(name, rows, folder=None):
    import tempfile
    from pathlib import Path

    path = Path(folder or tempfile.mkdtemp()) / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
