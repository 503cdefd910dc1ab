"""``tango sweep``: every threshold's metric, tier-2 fraction and speedup, from one run of each tier,
and the threshold whose loss is certified within a budget."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import click

from cli.options import CONTEXT, backend_option, corpus_options, corpus_spec


@dataclass
class SweepData:
    """The items a sweep runs on: texts, optional gold ids, the metric, and a title for the plot."""

    texts: list[str]
    pairs: list[str] | None
    gold: object  # np.ndarray of canonical ids, or None for an unlabelled sample
    metric_name: str
    metric: Callable | None
    title: str
    total: int = 0  # --unlabelled: the corpus's items (the sample is a job's calibration sample of them)
    seed: str = "0"
    chunk_size: int | None = None  # --unlabelled: scored in the job's chunks, so confidences match it exactly


@click.command(context_settings=CONTEXT)
@click.option("--small", "small_model", required=True, metavar="S",
              help="Tier-1 (small) model: a local directory or a hub id. Its saved calibration "
                   "temperature, if any, is applied.")
@click.option("--big", "big_model", required=True, metavar="B", help="Tier-2 (big) model: a local directory or a hub id.")
@click.option("--task", "task_name", default=None, metavar="TASK",
              help="GLUE task (sst2, rte, ...): names the labels and the metric. Default: sst2-style "
                   "single sentences with accuracy when only --validation-file is given.")
@click.option("--data-dir", default=None, metavar="DIR", help="A GLUE directory holding <task>/dev.tsv.")
@click.option("--validation-file", default=None, metavar="FILE",
              help="Labelled data to sweep on (tsv, csv, jsonl or parquet) instead of the task's dev set.")
@click.option("--unlabelled", default=None, metavar="FILE",
              help="Sweep on a seeded random sample of this unlabelled corpus instead (read as `tango submit` "
                   "reads it; labels are ignored): the loss is disagreement with the big model, and the "
                   "threshold a job on FILE would certify on this sample is reported beside the table.")
@click.option("--sample", type=int, default=2000, show_default=True, metavar="N",
              help="With --unlabelled: how many items to sample (at most all but one of the corpus).")
@click.option("--seed", default="0", show_default=True, metavar="KEY",
              help="Seed of --sample and --folds; with --unlabelled, the sample a job with this id (or "
                   "`tango label --seed KEY`) calibrates on.")
@click.option("--layer-num", type=int, default=None, metavar="N", help="Keep only the first N layers of the small model.")
@click.option("--quantize-small", "quantize_small", is_flag=True,
              help="Run the small model int8 (dynamic quantization, CPU), as `tango worker tier1 --quantize` does, "
                   "so its costs and confidences are the ones the cluster will see.")
@click.option("--label-map", default=None, metavar="FROM=TO,...", help="Rename model labels before matching the tiers.")
@click.option("--metric", default=None, metavar="NAME",
              help="Metric to report (default: the task's first, e.g. accuracy; matthews_correlation for cola). "
                   "Only accuracy (or --loss disagreement) gets a guaranteed threshold; others use the point estimate.")
@click.option("--max-drop", "max_drop", type=float, default=0.5, show_default=True, metavar="POINTS",
              help="Loss budget in points: the recommended threshold is the fastest whose loss (accuracy drop, "
                   "or disagreement) is below this at --confidence.")
@click.option("--confidence", type=float, default=0.9, show_default=True, metavar="P",
              help="Probability that the recommended threshold's loss on new items is within --max-drop.")
@click.option("--loss", type=click.Choice(["drop", "disagreement"]), default=None,
              help="drop: accuracy lost against gold labels; disagreement: items answered by the small model "
                   "with another label than the big model's (needs no labels). Default: drop, or disagreement "
                   "with --unlabelled.")
@click.option("--max-tier2", "max_tier2", type=float, default=None, metavar="F",
              help="Instead: the most accurate threshold that sends at most this share of items to tier 2.")
@click.option("--folds", type=int, default=None, metavar="K",
              help="Also choose the threshold on K-1 seeded folds and measure it on the K-th, for each fold.")
@corpus_options
@click.option("--device", default="cpu", show_default=True, metavar="D", help="Device of both tiers.")
@click.option("--batch-size", type=int, default=32, show_default=True, metavar="N", help="Batch size of both tiers.")
@backend_option
@click.option("--output-dir", "output_dir", default="tango-sweep", show_default=True, metavar="DIR",
              help="Where sweep.csv and sweep.png are written.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole table and the recommendation as JSON.")
def sweep_command(small_model: str, big_model: str, task_name: str | None, data_dir: str | None,
                  validation_file: str | None, unlabelled: str | None, sample: int, seed: str, layer_num: int | None,
                  quantize_small: bool, label_map: str | None, metric: str | None, max_drop: float, confidence: float,
                  loss: str | None, max_tier2: float | None, folds: int | None, fmt: str | None, text_column: str,
                  pair_column: str | None, id_column: str, label_column: str, device: str, batch_size: int,
                  backend: str, output_dir: str, as_json: bool) -> None:
    """Sweep the confidence threshold of a cascade and recommend one with a guarantee.

    Both models run once over the items; the cascade is then simulated at every
    threshold from 1/labels to 1.0. For each it reports the metric, the fraction
    of items sent to tier 2, the speedup over the big model alone (from the
    measured per-item cost of each tier), the estimated loss and an upper
    confidence bound on it (Learn then Test with Hoeffding-Bentkus p-values).
    The recommended threshold is the fastest whose bound stays within --max-drop;
    none is recommended when none is certified or none beats the big model
    alone. Writes a CSV and a PNG plot and prints a line starting "recommended
    threshold".
    """
    from common.errors import ConfigError
    from common.ml.calibration import calibration_overlap
    from common.ml.sweep import fold_sweep, run_pair, sweep
    from common.ml.sweep_report import plot, recommendation_line, write_csv

    if unlabelled and (task_name or validation_file or metric or loss == "drop"):
        raise ConfigError("--unlabelled sweeps on disagreement with the big model: drop --task, "
                          "--validation-file, --metric and --loss drop")
    if not unlabelled and not task_name and not validation_file:
        raise ConfigError("pass --task (with --data-dir or the hub), --validation-file or --unlabelled")
    models = (small_model, big_model, layer_num, quantize_small, label_map, device, batch_size, backend)
    if unlabelled:  # the data are read before the models load, so a bad file fails fast
        data = _unlabelled(unlabelled, corpus_spec(fmt, text_column, pair_column, id_column, label_column), sample,
                           seed, small_model, big_model)
        small, big, alignment = _load(*models)
    else:
        from common.data.glue import load_eval_data

        eval_data = load_eval_data(task_name or "sst2", validation_file, data_dir)
        small, big, alignment = _load(*models)
        data = _labelled(eval_data, task_name or "sst2", metric, alignment, small_model, big_model)
    pair = run_pair(small, big, alignment, data.texts, data.pairs, progress=not as_json, chunk_size=data.chunk_size)
    overlap = calibration_overlap(small_model, data.texts, data.pairs) or 0
    if overlap:
        click.echo(f"warning: {small_model}'s calibration was fitted on {overlap} of these {len(data.texts)} items: "
                   "the recommended threshold and fold figures are optimistic", err=True)
    options = dict(max_drop=max_drop, confidence=confidence, loss=loss or "drop", max_tier2=max_tier2,
                   **({"metric": data.metric, "metric_name": data.metric_name} if data.metric else {}))
    result = replace(sweep(pair.small_probs, pair.big_preds, data.gold, *pair.per_item(), **options),
                     calibration_overlap=overlap)
    report = None
    if folds is not None:
        report = replace(fold_sweep(pair.small_probs, pair.big_preds, data.gold, *pair.per_item(), folds=folds,
                                    seed=_int_seed(seed), **options), calibration_overlap=overlap)
    job = _job_guarantee(pair, data, max_drop, confidence, len(alignment.labels)) if unlabelled else None
    out = Path(output_dir)
    csv_path, png_path = write_csv(result, out / "sweep.csv"), plot(result, out / "sweep.png", data.title)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "folds": report.as_dict() if report else None,
                               "csv": str(csv_path), "plot": str(png_path), **({"job_guarantee": job} if job else {})}))
        return
    _print(result, report, f"wrote {csv_path} and {png_path}")
    if job:
        click.echo(_job_line(job, unlabelled, data))
    click.echo(recommendation_line(result))


def _print(result, report, wrote: str) -> None:
    from common.ml.sweep_report import fold_summary, format_fold, format_row

    click.echo(f"big model alone: {result.metric_name} {result.big_metric:.2f}; "
               f"small model alone: {result.small_metric:.2f} ({result.items} items)")
    for row in _milestones(result):
        click.echo("  " + format_row(row, result.metric_name))
    if report is not None:
        for fold in report.folds:
            click.echo("  " + format_fold(fold, report.metric_name))
        click.echo(fold_summary(report))
    click.echo(wrote)


def _load(small_model: str, big_model: str, layer_num: int | None, quantize_small: bool, label_map: str | None,
          device: str, batch_size: int, backend: str):
    from common.labels import align_labels, parse_label_map
    from common.ml.models import load_tier

    small = load_tier(small_model, device=device, batch_size=batch_size, layer_num=layer_num, quantize=quantize_small,
                      backend=backend)
    big = load_tier(big_model, device=device, batch_size=batch_size, backend=backend)
    return small, big, align_labels(small.labels, big.labels, parse_label_map(label_map))


def _labelled(data, task_name: str, metric: str | None, alignment, small_model: str, big_model: str) -> SweepData:
    from common.data.glue import gold_label_ids, positive_label_id

    name, score = _metric(task_name, metric, positive_label_id(data.task, alignment))
    return SweepData(data.texts, data.pairs, gold_label_ids(data, alignment), name, score,
                     f"{data.task.name}: {_pair_name(small_model, big_model)} ({len(data)} items)")


def _unlabelled(path: str, spec, sample: int, seed: str, small_model: str, big_model: str) -> SweepData:
    """The calibration sample a job with id ``seed`` draws (``common.sampling.calibration_sample``), read with
    the cluster's own corpus reader so ids, columns and errors match ``submit``."""
    from common.data.corpus import read_corpus, summarize
    from common.errors import ConfigError, DataError
    from common.queue.config import resolve_chunk_size
    from common.queue.inprocess import pick_sample, texts_of

    if sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {sample}")
    total = summarize(path, spec).items
    if not total:
        raise DataError(f"{path}: no items to sweep on")
    items = [item for _, item in pick_sample(read_corpus(path, spec), total, min(sample, max(total - 1, 1)), seed)]
    texts, pairs = texts_of(items)
    return SweepData(texts, pairs, None, "", None,
                     f"{Path(path).name}: {_pair_name(small_model, big_model)} (sample of {len(items)}, seed {seed})",
                     total, seed, resolve_chunk_size(None, total))


def _job_guarantee(pair, data: SweepData, max_drop: float, confidence: float, num_labels: int) -> dict:
    """What ``tango label``/``submit --max-disagreement`` would certify on this very sample (``certify_target``
    on the same triples), or why nothing can be."""
    from common.errors import GuaranteeError
    from common.guarantee import QualityTarget, certify_target, check_target

    try:
        target = QualityTarget(max_drop / 100.0, confidence, str(len(data.texts)))
        check_target(target.max_loss, target.confidence)
        g = certify_target(pair.small_probs.max(axis=1), pair.small_probs.argmax(axis=1), pair.big_preds,
                           data.total, target, num_labels)
    except GuaranteeError as exc:
        return {"error": str(exc), "sample_size": len(data.texts), "total": data.total, "seed": data.seed}
    return {**g.as_dict(), "seed": data.seed, "describe": g.describe()}


def _job_line(job: dict, path: str, data: SweepData) -> str:
    if "error" in job:
        return f"job guarantee: none on this sample ({job['error']})"
    return (f"job guarantee on {Path(path).name} ({job['sample_size']} of {job['total']} items, seed {job['seed']}): "
            f"{job['describe']}; `tango label {path} --max-disagreement {job['max_loss']:g} --calibration "
            f"{job['sample_size']} --seed {job['seed']}` certifies the same")


def _int_seed(seed: str) -> int:
    """--folds' numpy seed: the number itself, or a stable hash of a job id."""
    import hashlib

    return int(seed) if seed.isdigit() else int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(),
                                                           "little")


def _pair_name(small_model: str, big_model: str) -> str:
    return f"{Path(small_model).name} -> {Path(big_model).name}"


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
