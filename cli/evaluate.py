"""``tango eval`` and ``run_tango.py``: the research script's evaluation, same flags."""
from __future__ import annotations

import json

import click

from cli.options import backend_option


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--task_name", required=True, metavar="TASK",
              help="GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or wnli.")
@click.option("--small_model_name_or_path", required=True, metavar="S",
              help="Tier-1 (small) model: a local directory or a hub id.")
@click.option("--big_model_name_or_path", required=True, metavar="B",
              help="Tier-2 (big) model: a local directory or a hub id.")
@click.option("--layer_num", type=int, default=None, metavar="N",
              help="Keep only the first N transformer layers of the small model.")
@click.option("--device_small", default="cpu", show_default=True, metavar="D",
              help="Device of the small model: cpu, cuda, cuda:N, mps or an ordinal.")
@click.option("--device_big", default="cpu", show_default=True, metavar="D",
              help="Device of the big model.")
@click.option("--per_device_eval_batch_size-small", "--per_device_eval_batch_size_small",
              "batch_size_small", type=int, default=32, show_default=True, metavar="N",
              help="Batch size of the small model.")
@click.option("--per_device_eval_batch_size-big", "--per_device_eval_batch_size_big",
              "batch_size_big", type=int, default=32, show_default=True, metavar="N",
              help="Batch size of the big model.")
@click.option("--confidence_threshold", type=float, default=0.9, show_default=True, metavar="T",
              help="Items whose small-model confidence (max softmax) is at or above T stop at tier 1.")
@click.option("--validation-file", default=None, metavar="FILE",
              help="Evaluate on this file (tsv, csv, jsonl or parquet) instead of the hub.")
@click.option("--data-dir", default=None, metavar="DIR",
              help="A GLUE directory holding <task>/dev.tsv (dev_matched.tsv for mnli).")
@click.option("--label-map", default=None, metavar="FROM=TO,...",
              help="Rename model labels before matching the tiers, e.g. LABEL_0=negative,LABEL_1=positive.")
@click.option("--compare", is_flag=True, help="Also run the big model alone and report the speedup.")
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def eval_command(task_name: str, small_model_name_or_path: str, big_model_name_or_path: str,
                 layer_num: int | None, device_small: str, device_big: str, batch_size_small: int,
                 batch_size_big: int, confidence_threshold: float, validation_file: str | None,
                 data_dir: str | None, label_map: str | None, compare: bool, backend: str, as_json: bool) -> None:
    """Evaluate the cascade on a GLUE task's validation split.

    Prints the task metric(s), inference time, items per second and the
    fraction of items sent to tier 2; with --compare, the big model alone too.
    """
    # imported here, not at the top: ``cli.main`` imports every command module,
    # and the cluster commands must start without torch
    from common.ml.evaluation import EvalSettings, evaluate, format_report

    settings = EvalSettings(
        task_name=task_name, small_model=small_model_name_or_path, big_model=big_model_name_or_path,
        confidence_threshold=confidence_threshold, layer_num=layer_num, device_small=device_small,
        device_big=device_big, batch_size_small=batch_size_small, batch_size_big=batch_size_big,
        validation_file=validation_file, data_dir=data_dir, label_map=label_map, compare=compare,
        progress=not as_json, backend=backend)
    report = evaluate(settings)
    click.echo(json.dumps(report) if as_json else format_report(report))
