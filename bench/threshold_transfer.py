#!/usr/bin/env python
"""Does the recommended threshold hold on items it was not chosen on?

With the reproduction's cached pair and its measured per-item costs, the threshold is
chosen by the default ``tango sweep`` rule (the fastest whose accuracy drop is certified
within ``--max-drop`` at 90% confidence) and, for comparison, by the old point-estimate
rule, each on one part of the data and applied to a part it never saw:

  * chosen on the 2,000 held-out train items (the calibration split), applied to dev;
  * two-fold on dev: chosen on a random half, applied to the other half, a few seeds.

It prints the chosen threshold, the drop against the big model and the ideal speedup on
the unseen part, for both rules: what the guarantee costs in speedup. Both models run
once; everything after is the cascade rule over their outputs.

    python bench/threshold_transfer.py --data_dir ../shared/data/glue --small-seconds 5.53 --big-seconds 60.37
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pairs import REPRO_CACHE, reproduction_pair  # noqa: E402
from bench.reproduce_sst2 import split_train  # noqa: E402
from common.cascade import escalate_mask, ideal_speedup  # noqa: E402
from common.data.glue import gold_label_ids, load_eval_data  # noqa: E402
from common.labels import align_labels  # noqa: E402
from common.ml.models import load_tier  # noqa: E402
from common.ml.sweep import SweepResult, accuracy_points, recommend, sweep  # noqa: E402
from common.ml.training import load_task_training_data  # noqa: E402


def outputs(small, big, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return small.probabilities(texts), big.probabilities(texts).argmax(axis=1)


def apply(threshold: float, probs: np.ndarray, big_preds: np.ndarray, gold: np.ndarray, cost: float) -> str:
    """The cascade at ``threshold`` on items it was not chosen on, as one line."""
    escalate = escalate_mask(probs, threshold)
    cascade = accuracy_points(np.where(escalate, big_preds, probs.argmax(axis=1)), gold)
    big = accuracy_points(big_preds, gold)
    return (f"T={threshold:.4f}: cascade {cascade:.2f} vs big {big:.2f} (drop {big - cascade:.2f} points), "
            f"tier 2 {escalate.mean():.1%}, ideal speedup {ideal_speedup(cost, 1.0, float(escalate.mean())):.2f}x")


def chosen(result: SweepResult, max_drop: float) -> list[tuple[str, float]]:
    """(rule, threshold) for the certified rule and the old point-estimate rule; 1.0 where one chose none."""
    point = recommend(result.rows, result.big_metric, max_drop)
    return [("certified", result.recommended.threshold if result.recommended else 1.0),
            ("point estimate", point.threshold if point else 1.0)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--small-seconds", type=float, required=True, help="small model alone on dev, from the reproduction")
    p.add_argument("--big-seconds", type=float, required=True, help="big model alone on dev, from the reproduction")
    p.add_argument("--fp32-small", action="store_true", help="run the small model in fp32 (the reproduction runs it int8)")
    p.add_argument("--max-drop", type=float, default=0.5)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    pair = reproduction_pair() or sys.exit(f"no reproduction pair under {REPRO_CACHE}: run reproduce_sst2.py first")
    small = load_tier(str(pair.small), batch_size=32, quantize=not args.fp32_small)
    big = load_tier(str(pair.big), batch_size=32)
    alignment = align_labels(small.labels, big.labels)
    dev = load_eval_data("sst2", data_dir=args.data_dir)
    dev_gold = gold_label_ids(dev, alignment)
    dev_probs, dev_big = outputs(small, big, dev.texts)
    per_item = (args.small_seconds / len(dev), args.big_seconds / len(dev))
    cost = args.small_seconds / args.big_seconds
    print(f"pair: {pair.label}")

    train = load_task_training_data("sst2", args.data_dir)
    held = train.subset(split_train(train, 0)[1])
    held_probs, held_big = outputs(small, big, held.texts)
    result = sweep(held_probs, held_big, np.asarray(held.label_ids), *per_item, max_drop=args.max_drop)
    for rule, threshold in chosen(result, args.max_drop):
        print(f"{rule}, chosen on {len(held)} held-out train items, applied to dev: "
              + apply(threshold, dev_probs, dev_big, dev_gold, cost))

    rng = np.random.default_rng(0)
    for seed in range(args.seeds):
        order = rng.permutation(len(dev_gold))
        for fit, test in ((order[::2], order[1::2]), (order[1::2], order[::2])):
            result = sweep(dev_probs[fit], dev_big[fit], dev_gold[fit], *per_item, max_drop=args.max_drop)
            for rule, threshold in chosen(result, args.max_drop):
                print(f"{rule}, dev two-fold, seed {seed}, chosen on {len(fit)} items, applied to the other "
                      f"{len(test)}: " + apply(threshold, dev_probs[test], dev_big[test], dev_gold[test], cost))


if __name__ == "__main__":
    main()
