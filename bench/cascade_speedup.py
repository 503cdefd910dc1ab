"""Cascade vs the big model alone, in-process, on SST-2 dev: speedup, accuracy, measured/ideal.

The ideal speedup for a tier-2 fraction f is big / (small + f x big), from the per-tier
costs measured in this same run; the ratio measured/ideal shows what the cascade loses to
its own overheads (routing, the second tokenization, smaller tier-2 batches). Every
configuration runs ``--repeats`` times, interleaved, and the fastest run counts (the CPUs
are shared). With ``--quantize`` the same figures follow for dynamic-int8 models.

    python bench/cascade_speedup.py --threshold 0.9 --repeats 3 --quantize
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.harness import machine  # noqa: E402
from bench.pairs import choose_pair, pick_threshold, sst2_dev  # noqa: E402
from common.cascade import Cascade  # noqa: E402
from common.cascade import ideal_speedup  # noqa: E402
from common.labels import align_labels  # noqa: E402
from common.ml.models import TierModel, load_tier  # noqa: E402


def timed(run, repeats: int) -> tuple[float, object]:
    """The fastest of ``repeats`` runs, and the last run's output."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def measure(small: TierModel, big: TierModel, texts: list[str], gold: list[str], threshold: float,
            repeats: int) -> dict:
    """One side-by-side measurement; each round runs big, small, cascade in turn."""
    alignment = align_labels(small.labels, big.labels)
    cascade = Cascade(small, big, threshold, alignment)
    for model in (small, big):
        model.logits(texts[:8])  # warm-up
    times = {"big": [], "small": [], "cascade": []}
    outputs = {}
    for _ in range(repeats):
        for name, run in (("big", lambda: big.probabilities(texts)), ("small", lambda: small.probabilities(texts)),
                          ("cascade", lambda: cascade.run(texts))):
            seconds, outputs[name] = timed(run, 1)
            times[name].append(seconds)
    best = {name: min(values) for name, values in times.items()}
    out = outputs["cascade"]
    escalated = [texts[i] for i in np.flatnonzero(out.tiers == 2)]
    retokenize, _ = timed(lambda: [big.encode(escalated[s:s + big.batch_size], None)
                                   for s in range(0, len(escalated), big.batch_size)], repeats)
    big_labels = [alignment.labels[i] for i in alignment.big_to_canonical[outputs["big"].argmax(axis=1)]]
    cascade_labels = [alignment.labels[i] for i in out.label_ids]
    ideal = ideal_speedup(best["small"], best["big"], out.tier2_fraction)
    speedup = best["big"] / best["cascade"]
    return {"seconds": best, "tier2_fraction": out.tier2_fraction, "speedup": speedup, "ideal": ideal,
            "ratio": speedup / ideal, "retokenize_share": retokenize / best["cascade"],
            "big_accuracy": float(np.mean([a == b for a, b in zip(big_labels, gold)])),
            "cascade_accuracy": float(np.mean([a == b for a, b in zip(cascade_labels, gold)])),
            "cascade_labels": cascade_labels}


def report(name: str, figures: dict, items: int) -> None:
    s = figures["seconds"]
    print(f"[{name}] big alone {s['big']:.2f} s ({items / s['big']:.0f} items/s), small alone {s['small']:.2f} s, "
          f"cascade {s['cascade']:.2f} s ({items / s['cascade']:.0f} items/s); tier 2: {figures['tier2_fraction']:.1%}")
    print(f"[{name}] accuracy: big alone {figures['big_accuracy']:.4f}, cascade {figures['cascade_accuracy']:.4f} "
          f"({100 * (figures['cascade_accuracy'] - figures['big_accuracy']):+.2f} points)")
    print(f"[{name}] speedup {figures['speedup']:.2f}x, ideal {figures['ideal']:.2f}x, measured/ideal "
          f"{figures['ratio']:.3f}; re-tokenizing tier 2's items is {figures['retokenize_share']:.1%} of the "
          "cascade's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=None,
                        help="default: 0.9 for the reproduction pair, the 25%% quantile for stand-ins")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--quantize", action="store_true", help="also measure dynamic-int8 models")
    parser.add_argument("--stand-in", action="store_true", help="use the random stand-in pair even if the "
                                                                "reproduction pair exists")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts, gold = sst2_dev()
    with tempfile.TemporaryDirectory(prefix="tango-speedup-") as tmp:
        pair = choose_pair(Path(tmp), args.stand_in)
        load = lambda path, q: load_tier(str(path), batch_size=args.batch_size, quantize=q)  # noqa: E731
        small, big = load(pair.small, False), load(pair.big, False)
        threshold = pick_threshold(pair, small, texts, args.threshold)
        print(f"machine: {machine()}")
        print(f"models: {pair.label}")
        print(f"data: SST-2 dev, {len(texts)} items; threshold {threshold:.4f}; batch size {args.batch_size}; "
              f"best of {args.repeats} interleaved runs")
        fp32 = measure(small, big, texts, gold, threshold, args.repeats)
        report("fp32", fp32, len(texts))
        if args.quantize:
            int8 = measure(load(pair.small, True), load(pair.big, True), texts, gold, threshold, args.repeats)
            report("int8", int8, len(texts))
            agree = np.mean([a == b for a, b in zip(fp32["cascade_labels"], int8["cascade_labels"])])
            print(f"[int8 vs fp32] cascade time {int8['seconds']['cascade'] / fp32['seconds']['cascade']:.2f}x, "
                  f"big alone {int8['seconds']['big'] / fp32['seconds']['big']:.2f}x; accuracy "
                  f"{100 * (int8['cascade_accuracy'] - fp32['cascade_accuracy']):+.2f} points (cascade), "
                  f"{100 * (int8['big_accuracy'] - fp32['big_accuracy']):+.2f} (big); labels agree on {agree:.1%}")


if __name__ == "__main__":
    main()
