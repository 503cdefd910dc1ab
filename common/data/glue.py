"""The GLUE tasks: their input columns, label names and where their dev sets live.

Data comes from a local file (``--validation-file``), a GLUE-style directory
(``--data-dir/<task>/dev.tsv``), or the hub through ``datasets`` when it is
installed and reachable. The research script needed the hub; this does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.labels import LabelAlignment
from common.data.records import header, read_records


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: which columns hold its inputs and what its labels mean."""

    name: str
    text_key: str
    pair_key: str | None
    label_names: tuple[str, ...]  # dataset order; empty for regression
    hub_split: str = "validation"
    dev_files: tuple[str, ...] = ("dev.tsv",)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    headerless: tuple[str, ...] = ()  # column names for GLUE's header-less dev files

    def columns(self, key: str) -> tuple[str, ...]:
        return (key, *self.aliases.get(key, ()))


TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("cola", "sentence", None, ("unacceptable", "acceptable"),
             headerless=("source", "label", "author_label", "sentence")),
    GlueTask("sst2", "sentence", None, ("negative", "positive")),
    GlueTask("mrpc", "sentence1", "sentence2", ("not_equivalent", "equivalent"),
             aliases={"sentence1": ("#1 String",), "sentence2": ("#2 String",), "label": ("Quality",)}),
    GlueTask("qqp", "question1", "question2", ("not_duplicate", "duplicate"),
             aliases={"label": ("is_duplicate",)}),
    GlueTask("stsb", "sentence1", "sentence2", (), aliases={"label": ("score",)}),
    GlueTask("mnli", "premise", "hypothesis", ("entailment", "neutral", "contradiction"),
             hub_split="validation_matched", dev_files=("dev_matched.tsv", "dev.tsv"),
             aliases={"premise": ("sentence1",), "hypothesis": ("sentence2",), "label": ("gold_label",)}),
    GlueTask("qnli", "question", "sentence", ("entailment", "not_entailment")),
    GlueTask("rte", "sentence1", "sentence2", ("entailment", "not_entailment")),
    GlueTask("wnli", "sentence1", "sentence2", ("not_entailment", "entailment")),
)}


@dataclass
class EvalData:
    """A task's validation items with their raw gold labels."""

    task: GlueTask
    texts: list[str]
    pairs: list[str] | None
    raw_labels: list
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def get_task(name: str) -> GlueTask:
    try:
        return TASKS[name.lower()]
    except KeyError:
        raise DataError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}") from None


def load_eval_data(task_name: str, validation_file: str | None = None,
                   data_dir: str | None = None) -> EvalData:
    """A task's validation split from a file, a GLUE directory, or the hub."""
    task = get_task(task_name)
    if validation_file:
        return read_task_file(task, Path(validation_file))
    if data_dir:
        return read_task_file(task, _dev_path(task, Path(data_dir)))
    return _from_hub(task)


def _dev_path(task: GlueTask, data_dir: Path) -> Path:
    for folder in (data_dir / task.name, data_dir / task.name.upper(), data_dir):
        for name in task.dev_files:
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"no {task.dev_files[0]} for task {task.name!r} under {data_dir} "
                    f"(expected {data_dir / task.name / task.dev_files[0]})")


def read_task_file(task: GlueTask, path: Path, require_labels: bool = True) -> EvalData:
    """Read a task's items from any supported file, finding its columns by name."""
    fieldnames = _headerless_fields(task, path)
    texts, pairs, labels = [], [], []
    columns: dict[str, str | None] | None = None
    for number, row in read_records(path, fieldnames=fieldnames):
        if columns is None:
            columns = _resolve_columns(task, path, list(row), require_labels)
        texts.append(_text(row, columns["text"], path, number))
        if columns["pair"]:
            pairs.append(_text(row, columns["pair"], path, number))
        labels.append(_label(row, columns["label"], path, number, require_labels))
    if not texts:
        raise DataError(f"{path}: no records")
    return EvalData(task, texts, pairs if task.pair_key else None, labels, str(path))


def _headerless_fields(task: GlueTask, path: Path) -> list[str] | None:
    if not task.headerless or path.suffix.lower() != ".tsv":
        return None
    first = header(path) or []
    return None if task.text_key in first else list(task.headerless)


def _resolve_columns(task: GlueTask, path: Path, present: list[str], require_labels: bool) -> dict:
    def pick(key: str | None, required: bool) -> str | None:
        if key is None:
            return None
        for name in task.columns(key):
            if name in present:
                return name
        if required:
            raise DataError(f"{path}: task {task.name!r} needs a column {key!r} "
                            f"(or {', '.join(task.columns(key)[1:]) or 'no alias'}); the file has {present}")
        return None

    return {"text": pick(task.text_key, True), "pair": pick(task.pair_key, True),
            "label": pick("label", require_labels)}


def _text(row: dict, column: str, path: Path, number: int) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}, line {number}: column {column!r} is empty or not text")
    return value


def _label(row: dict, column: str | None, path: Path, number: int, required: bool):
    value = row.get(column) if column else None
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError(f"{path}, line {number}: missing label in column {column!r}")
        return None
    return value


def _from_hub(task: GlueTask) -> EvalData:
    try:
        import datasets
    except ImportError:
        raise DataError(f"no data for {task.name!r}: pass --data-dir or --validation-file "
                        "(or pip install datasets to load GLUE from the hub)") from None
    try:
        split = datasets.load_dataset("nyu-mll/glue", task.name, split=task.hub_split)
    except Exception as exc:  # datasets raises many network and cache error types
        raise DataError(f"cannot load GLUE {task.name!r} from the hub ({type(exc).__name__}); "
                        "pass --data-dir or --validation-file") from None
    pairs = list(split[task.pair_key]) if task.pair_key else None
    return EvalData(task, list(split[task.text_key]), pairs, list(split["label"]), f"hub:glue/{task.name}")


def gold_label_ids(data: EvalData, alignment: LabelAlignment) -> np.ndarray:
    """Gold labels as canonical ids of the cascade's label set.

    Numbers are the dataset's class indices (named by the task's label list);
    strings such as ``entailment`` are looked up by name in the models' labels,
    then in the task's own list when the models only have generic names.
    """
    return np.asarray([_gold_id(value, data, alignment, i) for i, value in enumerate(data.raw_labels)])


def _gold_id(value, data: EvalData, alignment: LabelAlignment, index: int) -> int:
    names = data.task.label_names
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        number = int(text)
        if not 0 <= number < len(alignment.labels):
            raise DataError(f"{data.source}, record {index + 1}: label {number} is out of range "
                            f"for {len(alignment.labels)} labels")
        name = names[number] if number < len(names) else None
        found = alignment.label_id(name) if name else None
        return number if found is None else found
    found = alignment.label_id(text)
    if found is None and text.casefold() in [n.casefold() for n in names]:
        found = [n.casefold() for n in names].index(text.casefold())
    if found is None:
        raise DataError(f"{data.source}, record {index + 1}: label {text!r} is not one of the "
                        f"models' labels {alignment.labels} or the task's {list(names)}")
    return found


def positive_label_id(task: GlueTask, alignment: LabelAlignment) -> int:
    """The canonical id of the class GLUE's F1 counts as positive."""
    if len(task.label_names) == 2:
        found = alignment.label_id(task.label_names[1])
        if found is not None:
            return found
    return 1
