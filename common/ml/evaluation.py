"""Evaluate a cascade on a GLUE task's validation split, as the research script did.

The returned report is plain data (the CLI prints it as text or JSON); timings
cover inference only, measured after one warm-up batch per model so that lazy
initialisation does not count against whichever model runs first.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from common.cascade import TIER_SMALL, Cascade, CascadeOutput, ideal_speedup, run_single, validate_threshold
from common.data.glue import EvalData, gold_label_ids, load_eval_data, positive_label_id
from common.labels import LabelAlignment, align_labels, parse_label_map
from common.metrics import compute_metrics
from common.ml.models import load_tier

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    """Everything ``run_tango.py`` / ``tango eval`` accept, as one object."""

    task_name: str
    small_model: str
    big_model: str
    confidence_threshold: float = 0.9
    layer_num: int | None = None
    device_small: str = "cpu"
    device_big: str = "cpu"
    batch_size_small: int = 32
    batch_size_big: int = 32
    validation_file: str | None = None
    data_dir: str | None = None
    label_map: str | None = None
    compare: bool = False
    progress: bool = True
    backend: str = "torch"


def evaluate(settings: EvalSettings) -> dict:
    """Load data and both tiers, check everything, then time the cascade (and the big model)."""
    label_map = parse_label_map(settings.label_map)
    data = load_eval_data(settings.task_name, settings.validation_file, settings.data_dir)
    small = load_tier(settings.small_model, device=settings.device_small, batch_size=settings.batch_size_small,
                      layer_num=settings.layer_num, backend=settings.backend)
    big = load_tier(settings.big_model, device=settings.device_big, batch_size=settings.batch_size_big,
                    backend=settings.backend)
    alignment = align_labels(small.labels, big.labels, label_map)
    validate_threshold(settings.confidence_threshold, small.num_labels)
    gold = gold_label_ids(data, alignment)
    cascade = Cascade(small, big, settings.confidence_threshold, alignment)
    for model in (small, big):
        model.warm_up(data.texts, data.pairs)
    output = cascade.run(data.texts, data.pairs, progress=settings.progress)
    report = _header(settings, data, alignment)
    report["cascade"] = _summary(output, data, gold, alignment)
    if settings.compare:
        alone = run_single(big, alignment.big_to_canonical, alignment.labels, data.texts, data.pairs,
                           progress="big alone" if settings.progress else None)
        report["big_alone"] = _summary(alone, data, gold, alignment)
        report["speedup"] = alone.seconds / output.seconds if output.seconds else None
        report["ideal_speedup"] = ideal_speedup(output.small_seconds, alone.seconds, output.tier2_fraction)
    return report


def _header(settings: EvalSettings, data: EvalData, alignment: LabelAlignment) -> dict:
    return {"task": data.task.name, "source": data.source, "items": len(data),
            "threshold": settings.confidence_threshold, "small_model": settings.small_model,
            "big_model": settings.big_model, "layer_num": settings.layer_num,
            "labels": alignment.labels}


def _summary(output: CascadeOutput, data: EvalData, gold: np.ndarray, alignment: LabelAlignment) -> dict:
    metrics = compute_metrics(data.task.name, output.label_ids, gold,
                              positive_label=positive_label_id(data.task, alignment))
    tier1 = int((output.tiers == TIER_SMALL).sum())
    return {"metrics": metrics, "seconds": output.seconds,
            "items_per_second": len(data) / output.seconds if output.seconds else None,
            "small_seconds": output.small_seconds, "big_seconds": output.big_seconds,
            "tier1_items": tier1, "tier2_items": len(data) - tier1,
            "tier2_fraction": output.tier2_fraction}


def format_report(report: dict) -> str:
    """The human-readable form of ``evaluate``'s report."""
    lines = [f"task {report['task']}: {report['items']} items from {report['source']}, "
             f"threshold {report['threshold']}"]
    lines.append(_line("cascade", report["cascade"]) +
                 f" | tier 2: {report['cascade']['tier2_fraction']:.1%} ({report['cascade']['tier2_items']} items)")
    if "big_alone" in report:
        lines.append(_line("big alone", report["big_alone"]))
        ideal = report.get("ideal_speedup")
        lines.append(f"speedup {report['speedup']:.2f}x over the big model alone"
                     + (f" (ideal {ideal:.2f}x for this tier-2 fraction)" if ideal else ""))
    return "\n".join(lines)


def _line(name: str, part: dict) -> str:
    metrics = " ".join(f"{k} {v:.4f}" for k, v in part["metrics"].items())
    rate = part["items_per_second"]
    return f"{name:<10} {metrics} | {part['seconds']:.2f} s | {rate:.1f} items/s" if rate else f"{name:<10} {metrics}"
