"""``tango label``: the cascade in-process on a corpus, no Redis, same output as ``tango results``.

A thin command over ``common.queue.inprocess``. With the same ``--chunk-size`` as
``submit`` (``auto`` picks the same for the same corpus, unless submit's
``--window`` is below it) every model batch holds the same items as in the
cluster, so scores match bit for bit; other sizes change only float rounding,
since padding a batch to another length perturbs float32 sums.

``--audit R`` runs the big model also on the audit sample of the items the
small one accepted, the very sample a cluster job with id ``--seed`` draws; the
agreement estimate goes to stderr. A quality target (``--max-disagreement`` or
``--max-drop``) first labels the calibration sample that job draws with both
tiers and certifies the threshold on it, as ``tango submit`` does with the same
options, then labels the rest at that threshold.
"""
from __future__ import annotations

import dataclasses
import time

import click

from cli.options import (CONTEXT, audit_option, backend_option, chunk_size_option, corpus_options, corpus_spec,
                         output_format, output_options, target_options)
from common.queue.config import resolve_chunk_size
from common.data.corpus import read_corpus, summarize

DEFAULT_THRESHOLD = 0.9


@click.command("label", context_settings=CONTEXT)
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("--small", required=True, metavar="S", help="Tier-1 (small) model directory or hub id.")
@click.option("--big", required=True, metavar="B", help="Tier-2 (big) model directory or hub id.")
@click.option("--threshold", type=float, default=None, metavar="T",
              help=f"Items whose tier-1 confidence is at or above T stop at tier 1 [default: {DEFAULT_THRESHOLD}, "
                   "unless a quality target picks it].")
@target_options
@chunk_size_option
@click.option("--device", default="cpu", show_default=True, help="Device for both models.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Batch size of both models.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (as `tango worker --threads`; float sums depend on the thread count).")
@click.option("--quantize", is_flag=True, help="Dynamic int8 quantization of both models' Linear layers (CPU).")
@backend_option
@click.option("--label-map", default=None, metavar="FROM=TO,...", help="Rename model labels before matching the tiers.")
@audit_option
@click.option("--seed", default=None, metavar="KEY",
              help="Draw the audit and calibration samples a cluster job with this id draws (default: a new id, "
                   "printed).")
@output_options("--output-format")
@corpus_options
def label_command(input_path: str, small: str, big: str, threshold: float | None, max_disagreement: float | None,
                  max_drop: float | None, confidence: float | None, calibration: str | None, require_gain: bool,
                  chunk_size: int | None, device: str, batch_size: int, threads: int | None, quantize: bool,
                  backend: str, label_map: str | None, audit: float, seed: str | None, output: str,
                  out_format: str | None, fmt: str | None, text_column: str, pair_column: str | None, id_column: str,
                  label_column: str) -> None:
    """Label INPUT with the cascade in this process and write one result per item, in input order.

    With --max-disagreement D (or --max-drop D, against gold labels) the
    threshold is not given but certified on a seeded sample of INPUT, which
    tier 2 labels: the rest's share of items where tier 1 gives another label
    than the big model (or a wrong one where it is right) is then at most D
    with probability at least --confidence.
    """
    from common.cascade import Cascade, validate_audit_rate, validate_threshold
    from common.guarantee import model_cost_ratio
    from common.target import quality_target
    from common.labels import align_labels, model_config, model_labels, parse_label_map
    from common.ml.models import load_tier
    from common.queue.inprocess import LabelAudit, Tally, label_items
    from common.queue.keys import new_job_id
    from common.queue.results import write_records

    target = quality_target(threshold, max_disagreement, max_drop, confidence, calibration, require_gain)
    key = seed or new_job_id()
    checks = LabelAudit(key, validate_audit_rate(audit)) if audit else None

    if threads:
        import torch

        torch.set_num_threads(threads)
    # the label set from the models' configs, as `submit --small --big` finds it, so that both commands
    # check the threshold and the gold labels alike, before any weights are loaded
    labels = align_labels(model_labels(small), model_labels(big), parse_label_map(label_map)).labels
    threshold = validate_threshold(DEFAULT_THRESHOLD if threshold is None else threshold, len(labels),
                                   option="--threshold")
    spec = dataclasses.replace(corpus_spec(fmt, text_column, pair_column, id_column, label_column),
                               labels=tuple(labels))
    summary = summarize(input_path, spec)
    chunk_size = resolve_chunk_size(chunk_size, summary.items)
    plan = target.plan(summary.items, model_cost_ratio(model_config(small), model_config(big))) if target else None

    def corpus():
        return read_corpus(input_path, spec, duplicates=summary.duplicate_lines)

    sample = _sample(corpus(), summary.items, target, plan, key, labels) if target else None
    small_model = load_tier(small, device=device, batch_size=batch_size, quantize=quantize, backend=backend)
    big_model = load_tier(big, device=device, batch_size=batch_size, quantize=quantize, backend=backend)
    cascade = Cascade(small_model, big_model, threshold,
                      align_labels(small_model.labels, big_model.labels, parse_label_map(label_map)))
    start = time.perf_counter()
    guarantee, fixed = None, {}
    if target:
        guarantee, fixed = _certify(cascade, sample, summary.items, target, plan, key, chunk_size, big)
        cascade = Cascade(small_model, big_model, guarantee.threshold if guarantee else 1.0, cascade.alignment)
    tally = Tally()
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as out:
        write_records(label_items(cascade, corpus(), (small, big), tally, chunk_size, checks, fixed),
                      out, output_format(output, out_format))
    seconds = time.perf_counter() - start
    click.echo(f"labelled {tally.items} of {summary.items} items in {seconds:.2f} s "
               f"({tally.items / max(seconds, 1e-9):.1f} items/s), "
               f"{tally.tier2 / max(tally.items, 1):.1%} sent to tier 2", err=True)
    if checks:
        click.echo(checks.describe(tally.items - tally.tier2, tally.tier2), err=True)
    if guarantee:
        from common.queue.audit import promise_line

        rest = checks.report(tally.items - tally.tier2, tally.tier2 - len(fixed)) if checks else None
        click.echo(promise_line(guarantee, rest), err=True)


def _sample(items, total: int, target, plan, key: str, labels: list[str]):
    """The calibration sample's items and, for --max-drop, their gold ids: read, and checked, before any
    weights load. None when the plan has no sample."""
    from common.queue.inprocess import pick_sample, sample_gold

    if not plan.size:
        return None
    sample = pick_sample(items, total, plan.size, key)
    return sample, sample_gold(sample, labels) if target.loss == "drop" else None


def _certify(cascade, sample, total: int, target, plan, key: str, chunk_size: int, big_name: str):
    """The calibration step: the sample through both tiers, then the certified threshold (None: no
    sample, everything on tier 2). Returns the guarantee and the sample's results by position."""
    from common.guarantee import certify_target
    from common.queue.inprocess import calibrate

    click.echo(plan.describe(total) + (f" (seed {key})" if plan.size else ""), err=True)
    if sample is None:
        return None, {}
    items, gold = sample
    done = calibrate(cascade, items, chunk_size, big_name, gold)
    guarantee = certify_target(done.confidence, done.small_ids, done.big_ids, total, target,
                               len(cascade.alignment.labels), done.gold_ids)
    click.echo(guarantee.describe(), err=True)
    return guarantee, done.records
