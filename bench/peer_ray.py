"""Ahead of the peer on the same job: tango's cluster against a Ray Data pipeline, side by side.

The peer a user would pick for "label a corpus with a cheap model and send the unsure items
to a big one" is Ray Data, written as a Ray user writes it: ``read_json`` -> ``map_batches``
with a pool of tier-1 actors -> ``map_batches`` with tier-2 actors that run the big model only
on the rows below the threshold -> ``write_json``, one torch thread per actor. Inside the actors
the models run as a Ray user runs a Hugging Face classifier (the tokenizer's own call on slices of
rows as they come, padded to each slice's longest; ``plain_probabilities``; the slice size is swept); a second Ray
variant runs tango's own inference path there instead (fast encoding, length-sorted batches), so
that the pipelines alone are compared too (``--ray-code``). Both sides load the models with
tango's loader (same weights, pooling, temperature and routing score), get the same
corpus (SST-2 train sentences, cycled), threshold and cores, and run back to back; both clocks
stop when the last result is in the output file (ours: ``tango results --follow`` writing beside
the job). Start-up cancels out: each side runs ``--sizes`` (two corpus sizes) and its rate is the
difference of items over the difference of seconds, the median over ``--repeats`` interleaved runs.

Each side's settings are swept first on the smaller size and its fastest kept. Ray's side is set up
as Ray's docs advise for CPU batch inference (``bench/ray_settings.py`` lists the advice and its
pages): as many logical CPUs as cores, and fractional ``num_cpus`` on the read tasks, both actor
pools and the write tasks, so that reading, both tiers and writing run at once on the cores;
1,000-row batches; 256-row model calls. From there the sweep moves one setting at a time and keeps
the fastest: the tier-1 pool (fixed or autoscaling ``min-max``), each stage's CPU share, the tier-2
pool, ``batch_size``, rows per model call, the read's ``override_num_blocks``,
``max_tasks_in_flight_per_actor`` and ``max_concurrent_calls_per_actor`` (the knobs those pages name
for throughput; a full product would be thousands of runs). A sweep run is timed from the first batch
reaching tier 1, since Ray's start-up (worker processes, model loads) dwarfs the smaller size's work
yet cancels out of the rates. ``--ray-sweep advised`` runs the advice alone. Our side sweeps the
tier-1 process count, rows per model call and chunk size. Prints every setting tried with its time,
each side's rate, the ratio, and how many items the two labelled differently (float sums differ
with batch composition, so an item on the threshold may change tier); ``--onnx`` adds our cluster on
ONNX Runtime, tier by tier.

    python bench/peer_ray.py --sizes 100000 300000            # the near-free model (the pipeline's cost)
    python bench/peer_ray.py --pair --sizes 1000 3000 --model-batches 32 256 --ray-model-batches 32 256
    python bench/peer_ray.py --small S --big B --threshold T --sizes 1000 3000   # any pair (the demo's)

Ray is a bench-only extra: ``pip install 'ray[data]'``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from itertools import product
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import build_corpus, fresh_cluster, machine, run_exported  # noqa: E402
from bench.queue_ceiling import near_free_model  # noqa: E402
from bench.ray_settings import ADVISED, AXES, RaySettings, tune  # noqa: E402


def plain_probabilities(tier, texts: list[str], batch: int):
    """How a Ray user runs a Hugging Face classifier: the tokenizer's own call on each slice of rows
    in the order they came, padded to the slice's longest, then the model and a softmax (at the
    tier's calibration temperature, so that both sides route the same items)."""
    import numpy as np
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            encoded = tier.tokenizer(texts[start:start + batch], padding=True, truncation=True,
                                     max_length=tier.max_length, return_tensors="pt")
            out.append(torch.softmax(tier.model(**encoded).logits / tier.temperature, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, tier.num_labels))


class RayTier:
    """A Ray actor's model: tango's loader (same weights, pooling, temperature) with either tango's
    inference path (``code="tango"``: the pipelines alone are compared) or a Ray user's own loop
    (``code="transformers"``, ``plain_probabilities``)."""

    def __init__(self, model: str, code: str, model_batch: int) -> None:
        import torch

        from common.ml.models import load_tier

        torch.set_num_threads(1)
        self.model, self.code, self.model_batch = load_tier(model, batch_size=model_batch), code, model_batch

    def probabilities(self, texts: list[str]):
        if self.code == "tango":
            return self.model.probabilities(texts)
        return plain_probabilities(self.model, texts, self.model_batch)


class Tier1(RayTier):
    """A Ray actor: the small model labels a batch and marks the rows below the threshold."""

    def __init__(self, model: str, threshold: float, code: str, model_batch: int, started: str = "") -> None:
        super().__init__(model, code, model_batch)
        self.threshold, self.started = threshold, started

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        if self.started:  # a directory: the wall time of this actor's first batch goes there, once
            Path(self.started, str(os.getpid())).write_text(repr(time.time()))
            self.started = ""
        probs = self.probabilities(list(batch["text"]))
        batch["label"] = np.asarray(self.model.labels)[probs.argmax(axis=1)]
        batch["score"] = probs.max(axis=1)
        batch["tier"] = np.where(batch["score"] >= self.threshold, 1, 2)
        return batch


class Tier2(RayTier):
    """A Ray actor: the big model relabels only the rows tier 1 was unsure of."""

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        unsure = np.flatnonzero(batch["tier"] == 2)
        label, score = batch["label"].astype(object), batch["score"].copy()  # Arrow's arrays are read-only
        if len(unsure):
            probs = self.probabilities([batch["text"][i] for i in unsure])
            label[unsure] = np.asarray(self.model.labels)[probs.argmax(axis=1)]
            score[unsure] = probs.max(axis=1)
        return {"id": batch["id"], "label": label, "score": score, "tier": batch["tier"]}


def run_ray(corpus: Path, out: Path, small: Path, big: Path, threshold: float, settings: RaySettings,
            code: str, started: Path | None = None) -> float:
    """Seconds for the whole pipeline, actor start-up included (a fresh pipeline per run); given an
    empty directory ``started``, seconds from the first batch reaching tier 1 instead, which leaves
    out the start-up that dwarfs a sweep run's work yet cancels out of the sizes' difference."""
    import ray

    def pool(actors: tuple[int, int]) -> ray.data.ActorPoolStrategy:
        return ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1],
                                          max_tasks_in_flight_per_actor=settings.in_flight,
                                          max_concurrent_calls_per_actor=settings.calls)

    start = time.perf_counter()
    (ray.data.read_json(str(corpus), num_cpus=settings.io_cpus, override_num_blocks=settings.blocks)
     .map_batches(Tier1, fn_constructor_args=(str(small), threshold, code, settings.model_batch, str(started or "")),
                  batch_size=settings.batch, compute=pool(settings.tier1), num_cpus=settings.tier1_cpus,
                  batch_format="numpy")
     .map_batches(Tier2, fn_constructor_args=(str(big), code, settings.model_batch), batch_size=settings.batch,
                  compute=pool(settings.tier2), num_cpus=settings.tier2_cpus, batch_format="numpy")
     .write_json(str(out), ray_remote_args={"num_cpus": settings.io_cpus}))
    seconds, end = time.perf_counter() - start, time.time()
    return seconds if started is None else end - min(float(f.read_text()) for f in started.iterdir())


def chunk_size_arg(value: str) -> str:
    """``auto`` (``tango submit`` picks for each corpus size) or a number, as submit's ``--chunk-size`` takes."""
    return value if value == "auto" else str(int(value))


def run_tango(root: Path, corpus: Path, out: Path, small: Path, big: Path, threshold: float, processes: int,
              batch_size: int, chunk_size: str, backends: tuple[str, str] = ("torch", "torch")) -> float:
    """Seconds from the first byte of ``tango submit`` to the last result in ``out`` (``tango results
    --follow`` writing beside the job, as Ray's time includes its ``write_json``), workers up beforehand."""
    with fresh_cluster(root, small, big, processes, backends, batch_size) as server:
        return run_exported(server.url, corpus, f"peer-{out.stem}", out, [
            "--threshold", repr(threshold), "--chunk-size", chunk_size, "--audit", "0"]).exported_seconds


def fastest(options: list[tuple], run: Callable[..., float], name: str) -> tuple:
    """The option whose run took least time, each run once (a single option too: its run warms the
    side up, as Ray's first pipeline in a process pays for starting its workers)."""
    seconds = {option: run(*option) for option in options}
    print("settings swept:", ", ".join(f"{name.format(*option)} {s:.1f} s" for option, s in seconds.items()))
    return min(seconds, key=seconds.get)


def tune_ray(run: Callable[[RaySettings], float], cores: int, axes: dict, name: str) -> RaySettings:
    """The fastest Ray settings of the sweep (``bench/ray_settings.py``), each printed with its time;
    with no axes, the advised settings alone, run once to warm Ray up as the sweep does."""
    if not axes:
        seconds = {ADVISED: run(ADVISED)}
        best = ADVISED
    else:
        best, seconds = tune(run, cores, axes=axes)
    print(f"{name} settings swept (one at a time from Ray's advice; seconds from the first batch at tier 1):")
    for settings, s in seconds.items():
        print(f"  {s:.1f} s  {settings.describe()}" + ("  <- fastest" if settings == best else ""))
    return best


def sweep_dir(root: Path, kind: str) -> Path:
    """A fresh directory for one sweep run's output or start markers."""
    return Path(tempfile.mkdtemp(prefix=f"sweep-{kind}-", dir=root))


def pool_arg(value: str) -> tuple[int, int]:
    """An actor pool: ``N`` (fixed) or ``MIN-MAX`` (autoscaling)."""
    low, _, high = value.partition("-")
    return int(low), int(high or low)


RAY = {"transformers": "Ray Data", "tango": "Ray Data with tango's inference code"}


def slug(name: str) -> str:
    return re.sub("[^A-Za-z0-9]+", "-", name)


def labels(path: Path) -> dict[str, str]:
    """id -> label from a JSON-lines file or a directory of them (Ray writes one file per block)."""
    files = sorted(path.glob("*.json*")) if path.is_dir() else [path]
    rows = (json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line)
    return {str(row["id"]): row["label"] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 300_000])
    parser.add_argument("--pair", action="store_true", help="the reproduction's pair instead of the near-free model")
    parser.add_argument("--small", type=Path, help="a small model directory (with --big and --threshold)")
    parser.add_argument("--big", type=Path, help="a big model directory")
    parser.add_argument("--threshold", type=float, default=0.9, help="with --pair or --small/--big")
    parser.add_argument("--actors", type=pool_arg, nargs="+", default=list(AXES["tier1"]),
                        help="Ray tier-1 actor pools to sweep: N (fixed) or MIN-MAX (autoscaling)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(AXES["batch"]), help="Ray batch sizes to sweep")
    parser.add_argument("--ray-model-batches", type=int, nargs="+", default=list(AXES["model_batch"]),
                        help="rows per model call inside Ray's actors, swept (fewer rows pad less in the plain loop)")
    parser.add_argument("--ray-sweep", choices=["docs", "advised"], default="docs",
                        help="docs: every setting Ray's docs advise tuning, one at a time from their advice "
                             "(bench/ray_settings.py); advised: their advice alone, unswept")
    parser.add_argument("--chunk-sizes", type=chunk_size_arg, nargs="+", default=["1000", "4096"],
                        help="our chunk sizes (--chunk-size: numbers or auto, the product's default), swept: a "
                             "worker sorts a chunk by length, so a larger one pads less, as Ray's batch rows are swept")
    parser.add_argument("--tier1-processes", type=int, nargs="+", default=[1, 2],
                        help="our tier-1 worker process counts to sweep")
    parser.add_argument("--model-batches", type=int, nargs="+", default=[256],
                        help="our workers' rows per model call (--batch-size), swept (32 suits a 12-layer model on "
                             "a CPU, 256 the near-free one)")
    parser.add_argument("--onnx", action="store_true",
                        help="also time our cluster at both sizes with ONNX Runtime on tier 1, on tier 2 and on both")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of every side at both sizes")
    parser.add_argument("--escalate", type=float, default=0.2, help="near-free model: share sent to tier 2")
    parser.add_argument("--ray-code", nargs="+", choices=["transformers", "tango"], default=["transformers", "tango"],
                        help="what runs the models inside Ray's actors: a Ray user's own Hugging Face loop "
                             "(the peer), and/or tango's inference path (the pipelines alone compared)")
    args = parser.parse_args()
    import ray

    cores = len(os.sched_getaffinity(0))
    # as many logical CPUs as cores, as Ray's docs advise; the stages share them through fractional num_cpus.
    # Ray runs its workers at nice 15 unless told otherwise (its job manager sets 0 for submitted jobs);
    # ours run at 0, so on a machine that other work shares Ray's actors would lose the cores to it
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="tango-peer-") as tmp:
        root = Path(tmp)
        if args.pair:
            from bench.pairs import reproduction_pair

            pair = reproduction_pair()
            if pair is None:
                sys.exit("the reproduction's pair is not built: run bench/reproduce_sst2.py first")
            small, big, threshold = pair.small, pair.big, args.threshold
        elif args.small and args.big:
            small, big, threshold = args.small, args.big, args.threshold
        else:
            small, threshold = near_free_model(root, args.escalate)
            big = small
        corpora = {n: root / f"corpus-{n}.jsonl" for n in args.sizes}
        for n, path in corpora.items():
            build_corpus(path, n)
        first = args.sizes[0]
        axes = {**AXES, "tier1": args.actors, "batch": args.batches, "model_batch": args.ray_model_batches}
        ray_settings = {code: tune_ray(lambda s, c=code: run_ray(corpora[first], sweep_dir(root, "out"), small, big,
                                                                   threshold, s, c, sweep_dir(root, "started")),
                                       cores, axes if args.ray_sweep == "docs" else {}, f"Ray ({code} code)")
                        for code in args.ray_code}
        processes, model_batch, chunk_size = fastest(
            list(product(args.tier1_processes, args.model_batches, args.chunk_sizes)),
            lambda p, m, c: run_tango(root, corpora[first], root / f"sweep-{p}-{m}-{c}.out", small, big, threshold,
                                      p, m, c), "ours: {} tier-1 process(es), model batch {}, chunk {}")
        variants = {"ours": lambda n, out: run_tango(root, corpora[n], out, small, big, threshold, processes,
                                                     model_batch, chunk_size)}
        for code, settings in ray_settings.items():
            variants[RAY[code]] = (lambda n, out, c=code, s=settings:
                                   run_ray(corpora[n], out, small, big, threshold, s, c))
        for backends in ([("onnx", "torch"), ("torch", "onnx"), ("onnx", "onnx")] if args.onnx else []):
            variants["ours, tier 1 on %s, tier 2 on %s" % backends] = (
                lambda n, out, b=backends: run_tango(root, corpora[n], out, small, big, threshold, processes,
                                                     model_batch, chunk_size, b))
        seconds = {name: {n: [] for n in args.sizes} for name in variants}
        for repeat in range(args.repeats):  # interleaved: every variant at both sizes, then again
            for name, run in variants.items():
                for n in args.sizes:
                    seconds[name][n].append(run(n, root / f"{slug(name)}-{n}-{repeat}.out"))
        first, last = args.sizes
        ours_labels = labels(root / f"ours-{last}-0.out")
        ray_labels = {RAY[code]: labels(root / f"{slug(RAY[code])}-{last}-0.out") for code in ray_settings}
    items = last - first
    rates = {name: [items / (b - a) for a, b in zip(runs[first], runs[last])] for name, runs in seconds.items()}
    median = {name: statistics.median(r) for name, r in rates.items()}
    print(f"{'near-free model' if small == big else f'pair {small.name} / {big.name}'}, threshold {threshold:.4f}, "
          f"{cores} cores; ours: {processes} tier-1 process(es), model batch {model_batch}, chunk {chunk_size}; "
          + "; ".join(f"{RAY[c]}: {s.describe()}" for c, s in ray_settings.items())
          + f"; {args.repeats} interleaved run(s)")
    for name in variants:
        runs = "; ".join(f"{a:.1f} s / {b:.1f} s" for a, b in zip(seconds[name][first], seconds[name][last]))
        print(f"  {name}: {first} / {last} items in {runs}; rates " + ", ".join(f"{r:,.0f}" for r in rates[name])
              + f" items/s, median {median[name]:,.0f}" + ("" if name == "ours" or name in ray_labels else
                                                          f", {median[name] / median['ours']:.2f}x ours on torch"))
    for name, theirs in ray_labels.items():
        differ = sum(ours_labels.get(i) != label for i, label in theirs.items())
        print(f"median rate from {first} to {last} items: ours {median['ours']:,.0f} items/s, {name} "
              f"{median[name]:,.0f} items/s: ratio {median['ours'] / median[name]:.2f}x; labels differ on {differ} "
              f"of {len(theirs)} items ({len(ours_labels)} in ours)")


if __name__ == "__main__":
    main()
