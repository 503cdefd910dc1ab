#!/usr/bin/env python
"""Does the recipe hold on every rebuild, and does the threshold hold on items it never saw?

For each ``--seeds`` value it builds (or finds cached) the pair exactly as
``reproduce_sst2.py`` does -- MPNet fine-tuned on a seeded subset of train, MiniLM-L6
distilled from it with a share kept out for the deferral head -- on one seeded split of
train that is the same for every seed. Then, with both models run once over the held-out
part of train (H) and dev (D):

  * per routing score (max softmax; margin and entropy, which rank a binary task's items
    exactly as max softmax does; the deferral head), the threshold the default
    ``tango sweep`` rule picks on H (the fastest whose accuracy drop is certified within
    ``--max-drop`` at 90% confidence) and on D, each applied to the other: the drop
    against the big model and the speedup from the tiers' per-item costs measured here;
  * the old point-estimate rule on the same parts (what the guarantee costs);
  * several seeded random halves of H+D, chosen on one half, applied to the other;
  * the cascade timed end to end on D at the deferral head's threshold chosen on H, against
    the big model alone, side by side in this process;
  * the perfect router (tier 2 gets exactly the items where the two models disagree) and the
    share of its speedup reached.

    python bench/recipe_seeds.py --data_dir ../shared/data/glue --seeds 0 1 2
    python bench/recipe_seeds.py --data_dir ../shared/data/glue --task rte --seeds 0
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.repro_report import best_of  # noqa: E402
from bench.reproduce_sst2 import RECIPES, build_pair, parse_args as recipe_args, split_train  # noqa: E402
from common.cascade import Cascade, TIER_BIG, escalate_mask, run_single, softmax  # noqa: E402
from common.data.glue import gold_label_ids, load_eval_data  # noqa: E402
from common.labels import align_labels  # noqa: E402
from common.ml.deferral import features, routed_probabilities  # noqa: E402
from common.ml.models import load_tier  # noqa: E402
from common.ml.sweep import accuracy_points, recommend, sweep  # noqa: E402
from common.ml.training import load_task_training_data  # noqa: E402

log = logging.getLogger("recipe_seeds")


@dataclass
class Part:
    """One labelled part with both models' outputs on it, in canonical label ids."""

    name: str
    scores: dict[str, np.ndarray]  # routing score name -> probabilities whose max is that score
    small: np.ndarray
    big: np.ndarray
    gold: np.ndarray

    def take(self, index: np.ndarray, name: str) -> "Part":
        return Part(name, {k: v[index] for k, v in self.scores.items()}, self.small[index], self.big[index],
                    self.gold[index])

    def __len__(self) -> int:
        return len(self.gold)


def routing_scores(logits: np.ndarray, pooled: np.ndarray, temperature: float, head) -> dict[str, np.ndarray]:
    """Each score as probabilities whose row max is the score, so the one cascade rule applies to all."""
    probs = softmax(logits, temperature)
    seen = features(logits, pooled)  # the head's inputs end with the margin and the entropy: rank on them too
    margin, entropy = seen[:, -2], seen[:, -1]
    floor = 1.0 / logits.shape[1]

    def above_floor(unit: np.ndarray) -> np.ndarray:
        """A score in [0, 1] mapped into (1/L, 1], increasing, so no item ties at the floor."""
        return floor + (1.0 - floor) * (0.5 + 0.5 * unit)

    scores = {"max softmax": probs,
              "margin": routed_probabilities(probs, above_floor(np.tanh(margin))),
              "entropy": routed_probabilities(probs, above_floor(1.0 - entropy / np.log(logits.shape[1])))}
    if head is not None:
        scores["deferral head"] = routed_probabilities(probs, head.agreement(seen))
    return scores


def run_part(name: str, small, big, alignment, texts: list[str], pairs, gold: np.ndarray) -> Part:
    logits, pooled = small.run(texts, pairs, progress=f"small on {name}", pooled=True)
    canon = np.empty_like(logits)
    canon[:, alignment.small_to_canonical] = logits
    big_ids = alignment.big_to_canonical[big.logits(texts, pairs, progress=f"big on {name}").argmax(axis=1)]
    return Part(name, routing_scores(canon, pooled, small.temperature, small.deferral), canon.argmax(axis=1),
                big_ids, gold)


def choose(fit: Part, score: str, costs: tuple[float, float], max_drop: float) -> dict[str, float]:
    """The certified rule's and the point rule's thresholds on ``fit`` (1.0 where a rule picks none)."""
    result = sweep(fit.scores[score], fit.big, fit.gold, *costs, max_drop=max_drop)
    point = recommend(result.rows, result.big_metric, max_drop)
    return {"certified": result.recommended.threshold if result.recommended else 1.0,
            "point": point.threshold if point else 1.0}


def apply(test: Part, score: str, threshold: float, cost_ratio: float) -> dict[str, float]:
    escalate = escalate_mask(test.scores[score], threshold)
    cascade = np.where(escalate, test.big, test.small)
    share = float(escalate.mean())
    return {"threshold": round(threshold, 5), "drop": round(accuracy_points(test.big, test.gold)
                                                             - accuracy_points(cascade, test.gold), 3),
            "tier2": round(share, 4), "speedup": round(1.0 / (cost_ratio + share), 3)}


def perfect_router(part: Part, cost_ratio: float) -> float:
    """Tier 2 on exactly the items where the tiers disagree: the big model's labels at the least cost."""
    return 1.0 / (cost_ratio + float((part.small != part.big).mean()))


def measure_seed(args: argparse.Namespace, seed: int) -> tuple[dict, list[Part]]:
    build = recipe_args(["--data_dir", args.data_dir, "--task", args.task, "--seed", str(seed),
                         "--cache-dir", args.cache_dir, "--build-only", "--pooling", args.pooling, *args.recipe]
                        + (["--big-seed", str(args.big_seed)] if args.big_seed is not None else []))
    started = time.perf_counter()
    big_dir, smalls = build_pair(build)
    built = time.perf_counter() - started
    small = load_tier(str(smalls[6]), batch_size=args.batch_size, backend=args.backend, quantize=args.small_int8)
    big = load_tier(str(big_dir), batch_size=args.batch_size, backend=args.backend)
    alignment = align_labels(small.labels, big.labels)
    train = load_task_training_data(args.task, args.data_dir)
    held = train.subset(split_train(train, build.split_seed, RECIPES[args.task].held_out)[1])
    dev = load_eval_data(args.task, data_dir=args.data_dir)
    H = run_part("held-out train", small, big, alignment, held.texts, held.pairs,
                 np.asarray([alignment.label_id(held.labels[i]) for i in held.label_ids]))
    D = run_part("dev", small, big, alignment, dev.texts, dev.pairs, gold_label_ids(dev, alignment))
    timed = time_end_to_end(small, big, alignment, dev, H, args)
    cost_ratio = timed["small_seconds"] / timed["big_seconds"]
    costs = (timed["small_seconds"] / len(D), timed["big_seconds"] / len(D))
    figures = {"seed": seed, "big_seed": seed if build.big_seed is None else build.big_seed, "task": args.task,
               "backend": args.backend, "small_int8": args.small_int8,
               "build_seconds": round(built, 1), "small": str(smalls[6]),
               "big": str(big_dir), "deferral": small.deferral.report if small.deferral else None,
               "big_accuracy": {p.name: round(accuracy_points(p.big, p.gold), 3) for p in (H, D)},
               "small_accuracy": {p.name: round(accuracy_points(p.small, p.gold), 3) for p in (H, D)},
               "cost_ratio": round(cost_ratio, 4), "end_to_end": timed, "transfer": [], "halves": []}
    figures["perfect_router"] = {p.name: round(perfect_router(p, cost_ratio), 3) for p in (H, D)}
    for fit, test in ((H, D), (D, H)):
        for score in H.scores:
            for rule, threshold in choose(fit, score, costs, args.max_drop).items():
                row = {"chosen_on": fit.name, "applied_to": test.name, "score": score, "rule": rule,
                       **apply(test, score, threshold, cost_ratio)}
                row["share_of_perfect"] = round(row["speedup"] / perfect_router(test, cost_ratio), 3)
                figures["transfer"].append(row)
    both = concat(H, D)
    rng = np.random.default_rng(args.split_draws_seed)
    for draw in range(args.halves):
        order = rng.permutation(len(both))
        fit, test = both.take(order[::2], f"half A{draw}"), both.take(order[1::2], f"half B{draw}")
        for score in ("max softmax", "deferral head"):
            if score in both.scores:
                for rule, threshold in choose(fit, score, costs, args.max_drop).items():
                    figures["halves"].append({"draw": draw, "score": score, "rule": rule,
                                              **apply(test, score, threshold, cost_ratio)})
    return figures, [H, D]


def save_parts(parts: list[Part], path: Path) -> None:
    """Every item's outputs, so another rule or bound can be tried later without the hour-long build."""
    arrays = {}
    for part in parts:
        key = part.name.replace(" ", "_").replace("-", "_")
        arrays.update({f"{key}.small": part.small, f"{key}.big": part.big, f"{key}.gold": part.gold})
        arrays.update({f"{key}.score.{name}": probs for name, probs in part.scores.items()})
    np.savez_compressed(path, **arrays)


def concat(a: Part, b: Part) -> Part:
    return Part(f"{a.name}+{b.name}", {k: np.concatenate([a.scores[k], b.scores[k]]) for k in a.scores},
                np.concatenate([a.small, b.small]), np.concatenate([a.big, b.big]), np.concatenate([a.gold, b.gold]))


def time_end_to_end(small, big, alignment, dev, held: Part, args: argparse.Namespace) -> dict:
    """Big alone and small alone on D (interleaved, best of N); then the cascade at the threshold the
    certified rule picks on H with those costs, timed the same way."""
    for model in (small, big):
        model.warm_up(dev.texts, dev.pairs)
    big_s, alone = best_of(lambda: run_single(big, alignment.big_to_canonical, alignment.labels, dev.texts, dev.pairs),
                         args.repeats)
    small_s, _ = best_of(lambda: small.logits(dev.texts, dev.pairs), args.repeats)
    score = "deferral head" if small.deferral is not None else "max softmax"
    costs = (small_s / len(dev.texts), big_s / len(dev.texts))
    chosen = choose(held, score, costs, args.max_drop)["certified"]
    cascade = Cascade(small, big, chosen, alignment)
    cascade_s, out = best_of(lambda: cascade.run(dev.texts, dev.pairs), args.repeats)
    gold = gold_label_ids(dev, alignment)
    return {"score": score, "threshold": round(chosen, 5), "big_seconds": round(big_s, 3),
            "small_seconds": round(small_s, 3), "cascade_seconds": round(cascade_s, 3),
            "speedup": round(big_s / cascade_s, 3), "tier2": round(float((out.tiers == TIER_BIG).mean()), 4),
            "drop": round(accuracy_points(alone.label_ids, gold) - accuracy_points(out.label_ids, gold), 3)}


def summary_lines(figures: dict) -> list[str]:
    e2e = figures["end_to_end"]
    runtime = figures["backend"] + (", tier 1 int8" if figures["small_int8"] else "")
    lines = [f"seed {figures['seed']} (big model's seed {figures['big_seed']}, {figures['task']}, {runtime}): "
             f"big {figures['big_accuracy']}, small "
             f"{figures['small_accuracy']}, tier 1 costs 1/{1 / figures['cost_ratio']:.1f} of tier 2",
             f"  END TO END on dev, {e2e['score']} chosen on held-out train: T={e2e['threshold']}, drop "
             f"{e2e['drop']:.2f} points, tier 2 {e2e['tier2']:.1%}, {e2e['speedup']:.2f}x measured "
             f"(perfect router {figures['perfect_router']['dev']:.2f}x, reached "
             f"{e2e['speedup'] / figures['perfect_router']['dev']:.0%})"]
    if figures["deferral"]:
        d = figures["deferral"]
        lines.append(f"  deferral head: AUROC {d['cv_auroc']} vs max softmax {d['max_softmax_auroc']} on its "
                     f"{d['items']} held-out distillation items")
    for row in figures["transfer"]:
        lines.append(f"  {row['score']:<13} {row['rule']:<9} chosen on {row['chosen_on']:<14} -> {row['applied_to']:<14}"
                     f" T={row['threshold']:.4f} drop {row['drop']:5.2f} tier2 {row['tier2']:6.1%} "
                     f"{row['speedup']:5.2f}x ({row['share_of_perfect']:.0%} of perfect)")
    for score in ("max softmax", "deferral head"):
        for rule in ("certified", "point"):
            rows = [r for r in figures["halves"] if r["score"] == score and r["rule"] == rule]
            if rows:
                drops = [r["drop"] for r in rows]
                speeds = [r["speedup"] for r in rows]
                lines.append(f"  {len(rows)} random halves, {score}, {rule}: drop worst {max(drops):.2f} mean "
                             f"{np.mean(drops):.2f}; speedup worst {min(speeds):.2f}x mean {np.mean(speeds):.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--task", default="sst2", choices=sorted(RECIPES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--big-seed", type=int, default=None,
                   help="one big model (this seed's) under every student: the student's share of the variance")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "tango" / "repro"))
    p.add_argument("--pooling", default="auto", choices=["auto", "cls", "mean"], help="as reproduce_sst2.py")
    p.add_argument("--max-drop", type=float, default=0.5)
    p.add_argument("--halves", type=int, default=10, help="random halves of H+D to choose on and apply to")
    p.add_argument("--split-draws-seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="end-to-end timings: best of N, interleaved")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="runtime of both tiers and of the big model alone (the cost ratio is measured on it)")
    p.add_argument("--small-int8", action="store_true",
                   help="tier 1 quantized to int8 (dynamic): cheaper, with its own confidences, so the threshold "
                        "is certified on its outputs; the big model alone stays fp32")
    p.add_argument("--output", default="bench/out")
    p.add_argument("--recipe", nargs=argparse.REMAINDER, default=[],
                   help="the rest is passed to reproduce_sst2.py's build, to try a variant of the recipe "
                        "(e.g. --recipe --distill-samples 0 --small-epochs 3); it must come last")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cli.main import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        figures, parts = measure_seed(args, seed)
        tag = (f"seed{seed}" + (f"-big{args.big_seed}" if args.big_seed is not None else "")
               + ("" if args.backend == "torch" else f"-{args.backend}") + ("-small-int8" if args.small_int8 else "")
               + "".join("-" + part.lstrip("-") for part in args.recipe))
        (out / f"recipe_{args.task}_{tag}.json").write_text(json.dumps(figures, indent=2) + "\n")
        save_parts(parts, out / f"recipe_{args.task}_{tag}_parts.npz")
        print("\n".join(summary_lines(figures)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
