"""``tango calibrate``: fit a small model's temperature on held-out data and save it beside the model."""
from __future__ import annotations

import json

import click

from cli.options import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("--model", required=True, metavar="DIR",
              help="Local model directory to calibrate; the temperature is written to "
                   "DIR/tango_calibration.json and applied by every command that loads it, with a "
                   "fingerprint of the items it was fitted on.")
@click.option("--task", "task_name", default=None, metavar="TASK",
              help="GLUE task whose labelled data to fit on (with --data-dir, or --validation-file).")
@click.option("--data-dir", default=None, metavar="DIR", help="A GLUE directory; its <task>/dev.tsv is used.")
@click.option("--validation-file", default=None, metavar="FILE",
              help="Held-out labelled data to fit on (tsv, csv, jsonl or parquet). Best kept apart "
                   "from the data you later sweep thresholds on.")
@click.option("--max-items", type=int, default=None, metavar="N", help="Fit on the first N items only.")
@click.option("--batch-size", type=int, default=64, show_default=True, metavar="N", help="Inference batch size.")
@click.option("--device", default="cpu", show_default=True, metavar="D", help="Device to run the model on.")
@click.option("--dry-run", "dry_run", is_flag=True, help="Fit and report, but do not write the temperature.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def calibrate_command(model: str, task_name: str | None, data_dir: str | None, validation_file: str | None,
                      max_items: int | None, batch_size: int, device: str, dry_run: bool, as_json: bool) -> None:
    """Fit and save a temperature that calibrates a model's confidences.

    Temperature scaling (Guo et al., 2017) fits one temperature T minimising the negative log-likelihood of held-out
    labels under softmax(logits / T), so that a confidence threshold means the
    same whichever small model sits in tier 1. Reports NLL and expected
    calibration error before and after.
    """
    from common.ml.calibration import calibrate_model
    from common.errors import ConfigError

    if not task_name and not validation_file:
        raise ConfigError("pass --task (with --data-dir) or --validation-file")
    if max_items is not None and max_items < 2:
        raise ConfigError("--max-items must be at least 2")
    texts, pairs, gold = _held_out(model, task_name or "sst2", data_dir, validation_file, max_items)
    result = calibrate_model(model, texts, pairs, gold, batch_size=batch_size, device=device, write=not dry_run)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "written": not dry_run}))
        return
    click.echo(f"temperature {result.temperature:.4f} fitted on {result.examples} items: "
               f"NLL {result.nll_before:.4f} -> {result.nll_after:.4f}, "
               f"ECE {result.ece_before:.4f} -> {result.ece_after:.4f}")
    click.echo("not written (--dry-run)" if dry_run else
               f"saved to {model}/tango_calibration.json, with a fingerprint of its {result.examples} items "
               "so that `tango sweep` can warn when it sweeps on them")


def _held_out(model: str, task_name: str, data_dir: str | None, validation_file: str | None,
              max_items: int | None):
    from common.data.glue import gold_label_ids, load_eval_data
    from common.labels import align_labels, model_labels

    data = load_eval_data(task_name, validation_file, data_dir)
    labels = model_labels(model)
    gold = gold_label_ids(data, align_labels(labels, labels))
    n = max_items or len(data)
    return data.texts[:n], data.pairs[:n] if data.pairs else None, gold[:n]
