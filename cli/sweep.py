"""``tango sweep``: every threshold's metric, tier-2 fraction and speedup, from one run of each tier."""
from __future__ import annotations

import json
from pathlib import Path

import click

from cli.options import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("--small", "small_model", required=True, metavar="S",
              help="Tier-1 (small) model: a local directory or a hub id. Its saved calibration "
                   "temperature, if any, is applied.")
@click.option("--big", "big_model", required=True, metavar="B", help="Tier-2 (big) model: a local directory or a hub id.")
@click.option("--task", "task_name", default=None, metavar="TASK",
              help="GLUE task (sst2, rte, ...): names the labels and the metric. Default: sst2-style "
                   "single sentences with accuracy when only --validation_file is given.")
@click.option("--data_dir", default=None, metavar="DIR", help="A GLUE directory holding <task>/dev.tsv.")
@click.option("--validation_file", default=None, metavar="FILE",
              help="Labelled data to sweep on (tsv, csv, jsonl or parquet) instead of the task's dev set.")
@click.option("--layer_num", type=int, default=None, metavar="N", help="Keep only the first N layers of the small model.")
@click.option("--quantize-small", "quantize_small", is_flag=True,
              help="Run the small model int8 (dynamic quantization, CPU), as `tango worker tier1 --quantize` does, "
                   "so its costs and confidences are the ones the cluster will see.")
@click.option("--label_map", default=None, metavar="FROM=TO,...", help="Rename model labels before matching the tiers.")
@click.option("--metric", default=None, metavar="NAME",
              help="Metric to optimise (default: the task's first, e.g. accuracy; matthews_correlation for cola).")
@click.option("--max-drop", "max_drop", type=float, default=0.5, show_default=True, metavar="POINTS",
              help="The recommended threshold is the fastest whose metric (in points, x100) stays "
                   "within this much of the big model alone.")
@click.option("--device", default="cpu", show_default=True, metavar="D", help="Device of both tiers.")
@click.option("--batch_size", type=int, default=32, show_default=True, metavar="N", help="Batch size of both tiers.")
@click.option("--output-dir", "output_dir", default="tango-sweep", show_default=True, metavar="DIR",
              help="Where sweep.csv and sweep.png are written.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole table and the recommendation as JSON.")
def sweep_command(small_model: str, big_model: str, task_name: str | None, data_dir: str | None,
                  validation_file: str | None, layer_num: int | None, quantize_small: bool, label_map: str | None,
                  metric: str | None, max_drop: float, device: str, batch_size: int,
                  output_dir: str, as_json: bool) -> None:
    """Sweep the confidence threshold of a cascade and recommend one.

    Both models run once over the labelled data; the cascade is then simulated at
    every threshold from 1/labels to 1.0. For each it reports the metric, the
    fraction of items sent to tier 2 and the speedup over the big model alone,
    computed from the measured per-item cost of each tier. Writes a CSV and a PNG
    plot and prints a line starting "recommended threshold".
    """
    from common.errors import ConfigError
    from common.ml.sweep import format_row, plot, recommendation_line, write_csv

    if not task_name and not validation_file:
        raise ConfigError("pass --task (with --data_dir or the hub) or --validation_file")
    result, title = _run(small_model, big_model, task_name or "sst2", data_dir, validation_file, layer_num,
                         quantize_small, label_map, metric, max_drop, device, batch_size, progress=not as_json)
    out = Path(output_dir)
    csv_path = write_csv(result, out / "sweep.csv")
    png_path = plot(result, out / "sweep.png", title)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "csv": str(csv_path), "plot": str(png_path)}))
        return
    click.echo(f"big model alone: {result.metric_name} {result.big_metric:.2f}; "
               f"small model alone: {result.small_metric:.2f}")
    for row in _milestones(result):
        click.echo("  " + format_row(row, result.metric_name))
    click.echo(f"wrote {csv_path} and {png_path}")
    click.echo(recommendation_line(result))


def _run(small_model: str, big_model: str, task_name: str, data_dir: str | None, validation_file: str | None,
         layer_num: int | None, quantize_small: bool, label_map: str | None, metric: str | None, max_drop: float, device: str,
         batch_size: int, progress: bool):
    from common.data.glue import gold_label_ids, load_eval_data, positive_label_id
    from common.labels import align_labels, parse_label_map
    from common.ml.models import load_tier
    from common.ml.sweep import run_pair, sweep

    data = load_eval_data(task_name, validation_file, data_dir)
    small = load_tier(small_model, device=device, batch_size=batch_size, layer_num=layer_num, quantize=quantize_small)
    big = load_tier(big_model, device=device, batch_size=batch_size)
    alignment = align_labels(small.labels, big.labels, parse_label_map(label_map))
    gold = gold_label_ids(data, alignment)
    name, score = _metric(task_name, metric, positive_label_id(data.task, alignment))
    pair = run_pair(small, big, alignment, data.texts, data.pairs, progress=progress)
    small_cost, big_cost = pair.per_item()
    result = sweep(pair.small_probs, pair.big_preds, gold, small_cost, big_cost, metric=score,
                   metric_name=name, max_drop=max_drop)
    return result, f"{data.task.name}: {Path(small_model).name} -> {Path(big_model).name} ({len(data)} items)"


def _metric(task_name: str, metric: str | None, positive: int):
    """The metric as a callable in points (x100), so --max-drop reads the same for every metric."""
    from common.errors import ConfigError
    from common.metrics import compute_metrics, metric_names

    names = metric_names(task_name)
    name = metric or names[0]
    if name not in names:
        raise ConfigError(f"--metric {name!r} is not reported for task {task_name!r}: use one of {', '.join(names)}")
    return name, lambda preds, refs: 100.0 * compute_metrics(task_name, preds, refs, positive)[name]


def _milestones(result) -> list:
    """A handful of rows worth printing: the regular grid points near round thresholds."""
    wanted = [0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
    rows = result.rows
    picked = {min(rows, key=lambda r: abs(r.threshold - w)) for w in wanted if rows}
    return sorted(picked, key=lambda r: r.threshold)
