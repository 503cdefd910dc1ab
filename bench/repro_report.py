"""The measuring half of ``reproduce_sst2.py``: every figure timed side by side in one run.

Shared CPUs are noisy (other jobs come and go), so each configuration is timed
``repeats`` times, interleaved with the others, and the fastest run is kept.

Each small depth runs in fp32, and also int8 where ``--quantize-small`` names it: whether int8
pays depends on the student (one distilled MiniLM-L6 lost 0.8 points alone and needed 53% of
items escalated int8 against 14% in fp32; an earlier one of the same recipe gained from it), so
the variant whose recommended threshold is fastest is chosen by measurement, not assumed.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from common.cascade import Cascade, run_single
from common.cascade import ideal_speedup
from common.data.glue import gold_label_ids, load_eval_data
from common.labels import align_labels
from common.ml.models import TierModel, load_tier
from common.ml.sweep import accuracy_points, sweep
from common.ml.sweep_report import SweepResult, plot, recommendation_line, write_csv

log = logging.getLogger("reproduce_sst2")


def best_of(fn, repeats: int):
    """The fastest of ``repeats`` runs and that run's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        if seconds < best:
            best, result = seconds, out
    return best, result


def variant_name(layers: int, int8: bool) -> str:
    """``L6`` or ``L6-int8``: one small tier as measured (its depth and how it runs)."""
    return f"L{layers}" + ("-int8" if int8 else "")


def small_variants(args: argparse.Namespace, small_dirs: dict[int, Path]) -> dict[str, TierModel]:
    """Every depth in fp32, plus int8 for the depths ``--quantize-small`` names."""
    return {variant_name(n, int8): load_tier(str(p), batch_size=args.batch_size, quantize=int8)
            for n, p in small_dirs.items() for int8 in (False, True) if not int8 or n in args.quantize_small}


def report_pair(args: argparse.Namespace, big_dir: Path, small_dirs: dict[int, Path]) -> dict:
    data = load_eval_data("sst2", data_dir=args.data_dir)
    big = load_tier(str(big_dir), batch_size=args.batch_size)
    smalls = small_variants(args, small_dirs)
    alignment = align_labels(next(iter(smalls.values())).labels, big.labels)
    gold = gold_label_ids(data, alignment)
    for model in (big, *smalls.values()):
        model.logits(data.texts[:32])
    repeats = args.repeats
    big_s, big_out = best_of(lambda: run_single(big, alignment.big_to_canonical, alignment.labels, data.texts), repeats)
    big_acc = accuracy_points(big_out.label_ids, gold)
    log.info("big alone: accuracy %.2f in %.1fs (%.1f items/s)", big_acc, big_s, len(data) / big_s)
    rows = [_row("big alone (MPNet, 12 layers)", None, big_acc, 1.0, big_s, big_s, None)]
    sweeps, chosen = {}, None
    for name, small in smalls.items():
        small_s, probs = best_of(lambda: _canonical_probs(small, alignment, data.texts), repeats)
        small_acc = accuracy_points(probs.argmax(axis=1), gold)
        rows.append(_row(f"small alone (MiniLM {name})", None, small_acc, 0.0, small_s, big_s, None))
        result = sweep(probs, big_out.label_ids, gold, small_s / len(data), big_s / len(data), max_drop=args.max_drop)
        sweeps[name] = result
        log.info("%s: %s", name, recommendation_line(result))
        if chosen is None or _speed(result) > _speed(sweeps[chosen]):
            chosen = name
    rows += _cascade_rows(args, smalls, big, alignment, data.texts, gold, sweeps, big_s)
    table = {"items": len(data), "threads": args.threads, "repeats": repeats, "rows": rows,
             "small_int8_layers": list(args.quantize_small),
             "chosen_small": chosen, "sweeps": {n: s.as_dict() for n, s in sweeps.items()},
             "models": {"big": str(big_dir), **{f"small_L{n}": str(p) for n, p in small_dirs.items()}}}
    _write_outputs(args, sweeps, chosen)
    print(format_table(table, sweeps[chosen]))
    return table


def _canonical_probs(small: TierModel, alignment, texts: list[str]) -> np.ndarray:
    raw = small.probabilities(texts)
    probs = np.empty_like(raw)
    probs[:, alignment.small_to_canonical] = raw
    return probs


def _cascade_rows(args, smalls, big, alignment, texts, gold, sweeps: dict[str, SweepResult], big_s: float) -> list[dict]:
    """The cascade end to end (tier 1 on all, tier 2 on the unsure), at fixed and recommended thresholds."""
    rows = []
    for variant, small in smalls.items():
        best = sweeps[variant].recommended
        recommended = best.threshold if best is not None else 1.0  # none certified: the big model alone
        for threshold in sorted({*args.thresholds, recommended}):
            cascade = Cascade(small, big, threshold, alignment)
            seconds, out = best_of(lambda: cascade.run(texts), args.repeats)
            name = f"cascade {variant} T={threshold:.4f}" + (" (recommended)" if threshold == recommended else "")
            rows.append(_row(name, threshold, accuracy_points(out.label_ids, gold), out.tier2_fraction, seconds, big_s,
                             ideal_speedup(out.small_seconds, big_s, out.tier2_fraction)))
            log.info("%s", _format_row(rows[-1]))
    return rows


def _row(name: str, threshold: float | None, acc: float, tier2: float, seconds: float, big_s: float,
         ideal: float | None) -> dict:
    return {"name": name, "threshold": threshold, "accuracy": round(acc, 2), "tier2_fraction": round(tier2, 4),
            "seconds": round(seconds, 3), "speedup": round(big_s / seconds, 3),
            "ideal_speedup": round(ideal, 3) if ideal else None}


def _write_outputs(args, sweeps: dict[str, SweepResult], chosen: str) -> None:
    out = Path(args.output)
    for variant, result in sweeps.items():
        write_csv(result, out / f"sweep_sst2_{variant}.csv")
    plot(sweeps[chosen], out / "reproduce_sst2.png",
         f"SST-2 dev: MiniLM {chosen} (distilled) -> MPNet, {args.threads} CPU thread{'s' * (args.threads > 1)}")


def _format_row(row: dict) -> str:
    ideal = f"{row['ideal_speedup']:.2f}x" if row["ideal_speedup"] else "-"
    return (f"{row['name']:<44} {row['accuracy']:6.2f} {row['tier2_fraction']:7.1%} "
            f"{row['seconds']:8.2f} {row['speedup']:7.2f}x {ideal:>7}")


def format_table(table: dict, chosen: SweepResult) -> str:
    lines = [f"SST-2 dev, {table['items']} items, {table['threads']} threads, best of {table['repeats']} runs",
             f"{'configuration':<44} {'acc':>6} {'tier-2':>7} {'time(s)':>8} {'speedup':>8} {'ideal':>7}"]
    lines += [_format_row(row) for row in table["rows"]]
    variant = table["chosen_small"]
    lines.append(f"small tier chosen: MiniLM {variant}; " + recommendation_line(chosen)
                 + " [sweep estimate from per-item costs]")
    big = table["rows"][0]
    final = next(r for r in table["rows"] if r["name"].startswith(f"cascade {variant} ") and "recommended" in r["name"])
    lines.append(f"END TO END at the recommended threshold {final['threshold']:.4f}: cascade accuracy "
                 f"{final['accuracy']:.2f} vs big alone {big['accuracy']:.2f} "
                 f"(drop {big['accuracy'] - final['accuracy']:.2f} points), tier-2 fraction {final['tier2_fraction']:.3f}, "
                 f"speedup {final['speedup']:.2f}x (ideal {final['ideal_speedup']:.2f}x)")
    return "\n".join(lines)


def _speed(result: SweepResult) -> float:
    """The recommended threshold's speedup; 0 when the sweep certified none."""
    return result.recommended.speedup if result.recommended is not None else 0.0
