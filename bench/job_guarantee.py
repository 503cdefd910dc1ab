"""Does a job's own calibration keep its promise, and what does it cost against the best threshold?

Offline replay (issue 29). Both tiers score every item of a corpus once (cached
as .npz); the job's calibration is then replayed over seeded samples, which is
cheap: per corpus size and target D at confidence C, ``--runs`` corpora are
drawn from the scored items (with replacement when the size exceeds them), the
``auto`` sample is certified with ``common.guarantee`` and the rest is labelled
at the chosen threshold. Reported per rule:

- job: the certified threshold; miss = the rest's measured disagreement with
  the big model above D; speed = big model alone / (sample through both tiers
  + rest through the cascade), from the measured small/big cost ratio.
- oracle: the lowest threshold whose disagreement on the corpus itself is within
  D, with no sample: the best any rule could do.
- tuning: the threshold ``tango sweep --loss disagreement`` certifies on a
  separate tuning set (i.i.d. Hoeffding-Bentkus), applied to every corpus.

    python bench/job_guarantee.py --synthetic                  # seconds, for CI
    python bench/job_guarantee.py --demo --data_dir /work/shared/data/glue
    python bench/job_guarantee.py --pair BIG_DIR SMALL_DIR --corpus reviews   # a reproduce_sst2.py pair
    python bench/job_guarantee.py --scores corpus.npz --tuning tuning.npz --cost-ratio 0.16
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.errors import GuaranteeError  # noqa: E402
from common.queue.config import DEFAULT_AUDIT_RATE  # noqa: E402
from common.guarantee import DEFAULT_GRID, certify, check_sample_size, plan_calibration  # noqa: E402
from common.risk import binomial_interval, disagreement_losses, select_threshold  # noqa: E402
from common.sampling import calibration_sample  # noqa: E402

SIZES = (5_000, 20_000, 100_000)
SHARES = (0.005, 0.01, 0.02)
CACHE = Path.home() / ".cache" / "tango" / "job_guarantee"


@dataclass(frozen=True)
class Scores:
    """Per item: tier-1 confidence and label, tier-2 label (canonical ids)."""

    confidence: np.ndarray
    small: np.ndarray
    big: np.ndarray

    def take(self, idx: np.ndarray) -> "Scores":
        return Scores(self.confidence[idx], self.small[idx], self.big[idx])

    def __len__(self) -> int:
        return len(self.big)


@dataclass(frozen=True)
class Row:
    size: int
    share: float
    rule: str
    miss: float  # share of runs whose measured disagreement exceeded D
    tier2: float  # mean tier-2 share (of the rest, for the job)
    speed: float  # mean end-to-end speed against the big model alone
    sample: float  # mean calibration sample


def synthetic(count: int, seed: int, easy: bool = False) -> Scores:
    """A pair whose disagreements thin out with confidence; ``easy`` is a tuning set where tier 1 looks better."""
    rng = np.random.default_rng(seed)
    conf = 0.5 + 0.5 * rng.beta(4.0, 1.2, count)
    rate = 0.35 * ((1.0 - conf) / 0.5) ** (2.5 if easy else 1.5)
    small = rng.integers(0, 2, count)
    return Scores(conf, small, np.where(rng.random(count) < rate, 1 - small, small))


def oracle_share(s: Scores, share: float) -> float:
    """The lowest tier-2 share any threshold reaches on these items with disagreement within ``share``."""
    order = np.argsort(-s.confidence, kind="stable")
    conf, bad = s.confidence[order], (s.small != s.big)[order]
    cum = np.cumsum(bad)
    cut = np.r_[conf[1:] < conf[:-1], True]  # a threshold can only cut between distinct confidences
    ok = np.flatnonzero(cut & (cum <= share * len(conf)))
    return 1.0 - (ok[-1] + 1) / len(conf) if ok.size else 1.0


def tuning_threshold(tuning: Scores, share: float, level: float) -> float:
    scores = np.minimum(tuning.confidence, np.nextafter(1.0, 0.0))
    losses = disagreement_losses(tuning.small, tuning.big, scores, DEFAULT_GRID)
    sel = select_threshold(losses, DEFAULT_GRID, share, 1.0 - level, lower=0.0)
    valid = np.flatnonzero(sel.valid)
    return float(DEFAULT_GRID[valid].min()) if valid.size else 1.0


def _at(s: Scores, threshold: float) -> tuple[float, float]:
    """(disagreement share, tier-2 share) of items labelled at ``threshold``."""
    accepted = (s.confidence >= threshold) & (threshold < 1.0)
    return float((accepted & (s.small != s.big)).mean()), float(1.0 - accepted.mean())


def _speed(ratio: float, tier2: float, size: int = 1, sample: int = 0, audit: float = 0.0) -> float:
    """Big alone over the job: a sample through both tiers, the rest through the cascade, where tier 2 also
    checks an ``audit`` share of tier 1's answers. At threshold 1.0 the rest skips tier 1, as the cluster
    sends it (``common.queue.submission.chunked``)."""
    rest = 1.0 if tier2 >= 1.0 else ratio + tier2 + audit * (1.0 - tier2)
    return size / (sample * (1.0 + ratio) + (size - sample) * rest)


def replay(scores: Scores, tuning: Scores | None, ratio: float, sizes=SIZES, shares=SHARES, level: float = 0.9,
           runs: int = 100, method: str = "exact", calibration: int | None = None, audit: float = 0.0) -> list[Row]:
    """``calibration`` None: the ``auto`` plan's sample; a number: that sample for every corpus. ``audit``:
    every rule's job runs with that audit rate, as a tango job does by default."""
    rows = []
    for size in sizes:
        for share in shares:
            n = calibration if calibration is not None else plan_calibration(size, share, level, ratio,
                                                                             method=method).size
            fixed = tuning_threshold(tuning, share, level) if tuning is not None else None
            acc = {"job": [], "oracle": [], "tuning": []}
            for run in range(runs):
                rng = np.random.default_rng([size, run])
                corpus = scores.take(rng.choice(len(scores), size, replace=size > len(scores)))
                acc["job"].append(_job(corpus, n, run, share, level, ratio, method, audit))
                e = oracle_share(corpus, share)
                acc["oracle"].append((False, e, _speed(ratio, e, audit=audit), 0))
                if fixed is not None:
                    d, e = _at(corpus, fixed)
                    acc["tuning"].append((d > share, e, _speed(ratio, e, audit=audit), 0))
            rows += [Row(size, share, rule, *np.mean(np.asarray(v, float), axis=0)) for rule, v in acc.items() if v]
    return rows


def _job(corpus: Scores, size: int, seed: int, share: float, level: float, ratio: float,
         method: str, audit: float = 0.0) -> tuple[bool, float, float, int]:
    if size == 0:  # no gain expected: everything straight to tier 2, no sample
        return False, 1.0, 1.0, 0
    sample = calibration_sample(len(corpus), size, seed)
    s = corpus.take(sample)
    g = certify(s.confidence, s.small, s.big, len(corpus), share, level, method=method)
    rest = np.ones(len(corpus), bool)
    rest[sample] = False
    d, e = _at(corpus.take(np.flatnonzero(rest)), g.threshold)
    return d > share, e, _speed(ratio, e, len(corpus), size, audit), size


def format_rows(rows: list[Row], runs: int | None = None) -> str:
    """The table; with ``runs``, each job's miss share carries its 95% Clopper-Pearson interval, since a
    promise kept in 90% of all samples still misses in more than 10% of a finite set of runs at times."""
    oracle = {(r.size, r.share): r.speed for r in rows if r.rule == "oracle"}
    lines = ["| corpus | D | rule | runs missing D | tier-2 share | speed | of oracle | sample |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        miss = f"{r.miss:.0%}" + (_interval(r.miss, runs) if runs and r.rule == "job" else "")
        lines.append(f"| {r.size:,} | {r.share:.1%} | {r.rule} | {miss} | {r.tier2:.1%} | {r.speed:.2f}x | "
                     f"{r.speed / oracle[(r.size, r.share)]:.1%} | {r.sample:,.0f} |")
    return "\n".join(lines)


def _interval(share: float, runs: int) -> str:
    low, high = binomial_interval(round(share * runs), runs)
    return f" ({low:.0%}-{high:.0%})"


@dataclass(frozen=True)
class Pair:
    """Two built tiers, the corpus they label and a tuning set neither tier trained on."""

    small_dir: str
    big_dir: str
    corpus: object  # common.ml.training.TrainingData
    tuning: object
    path: Path  # where both tiers' scores are cached


def demo_pair(data_dir: str, cache: Path) -> Pair:
    """The demo's MiniLM pair on SST-2: the corpus is dev's sentences, the tuning set the demo's held-out
    train phrases (built once, as ``tango demo --data-dir`` builds it)."""
    from cli.demo.pipeline import DemoSettings, build_pair, load_demo_data

    settings = DemoSettings(cache_dir=Path.home() / ".cache" / "tango" / "demo", data_dir=data_dir)
    data = load_demo_data(settings)
    big_dir, small_dir = build_pair(settings, data, print)
    return Pair(str(small_dir), str(big_dir), data.corpus, data.held_out, cache / "demo_sst2.npz")


def recipe_pair(big_dir: str, small_dir: str, corpus_name: str, data_dir: str, cache: Path) -> Pair:
    """A pair built by ``bench/reproduce_sst2.py`` on SST-2 train phrases: the corpus is dev's whole
    sentences or the shipped reviews, the tuning set the recipe's held-out train phrases."""
    from cli.demo.pipeline import read_sample_reviews
    from common.data.glue import load_eval_data
    from common.ml.training import TrainingData, label_ids_for, load_task_training_data
    from bench.reproduce_sst2 import RECIPES, split_train

    train = load_task_training_data("sst2", data_dir)
    pool, held = split_train(train, 0, RECIPES["sst2"].held_out)
    if corpus_name == "reviews":
        corpus = read_sample_reviews()
    elif corpus_name == "long-phrases":
        corpus = train.subset(unseen_long(train, pool, Path(big_dir).name, Path(small_dir).name))
    else:
        dev = load_eval_data("sst2", data_dir=data_dir)
        corpus = TrainingData(dev.texts, None, label_ids_for(dev.raw_labels, train.labels)[0], train.labels)
    name = f"recipe_{Path(big_dir).name}_{Path(small_dir).name}_{corpus_name}.npz"
    return Pair(small_dir, big_dir, corpus, train.subset(held), cache / name)


def unseen_long(train, pool: list[int], big_name: str, small_name: str, words: int = 15) -> list[int]:
    """Train items neither tier trained on, of ``words`` words or more: distinct sentence-length items, ten
    times as many as dev's sentences (the recipe's default seeds: the big model's seeded subset of the
    pool, the student's first ``-n`` items of it, as the cached pair's names say)."""
    import random
    import re

    big_n, seed = (int(v) for v in re.search(r"-n(\d+)-.*-s(\d+)-split", big_name).groups())
    small_n = int(re.findall(r"-n(\d+)", small_name)[-1])
    seen = set(random.Random(seed).sample(pool, big_n)) | set(pool[:small_n])
    return [i for i in pool if i not in seen and len(train.texts[i].split()) >= words]


def score_pair(pair: Pair) -> tuple[Scores, Scores, float]:
    """Both tiers score every corpus and tuning item once, timed; the arrays are cached."""
    if pair.path.is_file():
        z = np.load(pair.path)
        return (Scores(z["conf"], z["small"], z["big"]), Scores(z["t_conf"], z["t_small"], z["t_big"]),
                float(z["ratio"]))
    from common.labels import align_labels
    from common.ml.models import load_tier
    from common.ml.sweep import run_pair

    small, big = load_tier(pair.small_dir), load_tier(pair.big_dir)
    alignment = align_labels(small.labels, big.labels)
    out = []
    for part in (pair.corpus, pair.tuning):
        run = run_pair(small, big, alignment, part.texts, part.pairs, progress=False)
        out.append((run, Scores(run.small_probs.max(axis=1), run.small_probs.argmax(axis=1), run.big_preds)))
    (corpus_run, scored), (_, tuned) = out
    ratio = corpus_run.small_seconds / corpus_run.big_seconds
    pair.path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(pair.path, conf=scored.confidence, small=scored.small, big=scored.big, t_conf=tuned.confidence,
             t_small=tuned.small, t_big=tuned.big, ratio=ratio)
    return scored, tuned, ratio


def cluster_check(pair: Pair, scores: Scores, size: int, share: float, level: float, root: Path) -> str:
    """One real job (redis-server, a Celery worker per tier) on ``size`` items drawn from the corpus: the
    threshold it fixes against ``certify_target`` on the offline scores of its own sample."""
    import json
    import tempfile

    from bench.harness import fresh_cluster
    from common.guarantee import QualityTarget, certify_target
    from common.testing.cluster import run_tango

    draw = np.random.default_rng([size, 0]).choice(len(scores), size, replace=size > len(scores))
    texts = pair.corpus.texts
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"id": i, "text": texts[j]}) + "\n" for i, j in enumerate(draw)))
        models = ["--small", pair.small_dir, "--big", pair.big_dir]
        with fresh_cluster(Path(tmp), Path(pair.small_dir), Path(pair.big_dir), batch_size=32) as server:
            job = f"jg-{size}-{share:g}"
            for args in (("submit", str(corpus), *models, "--max-disagreement", str(share), "--confidence",
                          str(level), "--job-id", job), ("wait", job)):
                done = run_tango(*args, redis_url=server.url, timeout=3600)
                if done.returncode:
                    raise SystemExit(f"cluster check: tango {args[0]} failed: {done.stderr.strip()}")
            quality = json.loads(run_tango("status", job, "--json", redis_url=server.url).stdout)["quality"]
    n, got = quality["sample_size"], quality["guarantee"]["threshold"]
    mine = scores.take(draw).take(calibration_sample(size, n, job))
    offline = certify_target(mine.confidence, mine.small, mine.big, size, QualityTarget(share, level), 2).threshold
    verdict = "the same" if got == offline else "DIFFERENT"
    return (f"cluster check, {size} items at D = {share:.1%}: sample {n}; the cluster fixed threshold {got:.10g}, "
            f"the offline replay of its sample predicts {offline:.10g}: {verdict}")


def frontier(scores: Scores, ratio: float, size: int, share: float, level: float, runs: int,
             method: str, audit: float = 0.0) -> tuple[int, float]:
    """The fixed sample size that runs fastest for this corpus and D, and its speed against the oracle: what
    ``auto`` could reach with hindsight, and what no uniform sample of the corpus beats."""
    from common.guarantee import minimum_sample_size

    low = minimum_sample_size(size, share, level, method) or size
    best = (0, 0.0)
    for n in np.unique(np.geomspace(low, max(low, size // 8), 10).astype(int)):
        rows = replay(scores, None, ratio, (size,), (share,), level, runs, method, calibration=int(n), audit=audit)
        speed = {r.rule: r.speed for r in rows}
        best = max(best, (int(n), speed["job"] / speed["oracle"]), key=lambda b: b[1])
    return best


def _load(path: str) -> Scores:
    z = np.load(path)
    return Scores(z["conf"], z["small"], z["big"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="a generated pair with a shifted tuning set")
    source.add_argument("--demo", action="store_true", help="the demo's MiniLM pair on SST-2 dev sentences")
    source.add_argument("--pair", nargs=2, metavar=("BIG", "SMALL"),
                        help="a pair built by bench/reproduce_sst2.py, scored on --corpus")
    source.add_argument("--scores", help=".npz with conf, small, big per item")
    parser.add_argument("--tuning", help=".npz of a tuning set, as --scores")
    parser.add_argument("--corpus", default="sentences", choices=["sentences", "reviews", "long-phrases"],
                        help="with --pair: SST-2 dev's whole sentences, the shipped reviews, or train items of 15 "
                             "words or more that neither tier saw")
    parser.add_argument("--data_dir", default="/work/shared/data/glue")
    parser.add_argument("--cache-dir", default=str(CACHE))
    parser.add_argument("--cost-ratio", type=float, default=None, help="small/big per-item cost (measured for --demo)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--method", default="exact", choices=["exact", "hb", "betting", "hb+betting"])
    parser.add_argument("--calibration", type=int, default=None, help="a fixed sample size instead of auto")
    parser.add_argument("--shares", default=",".join(map(str, SHARES)))
    parser.add_argument("--audit", type=float, default=DEFAULT_AUDIT_RATE,
                        help="the audit rate every rule's job runs with (a job's default; 0: none)")
    parser.add_argument("--frontier", action="store_true",
                        help="also sweep fixed sample sizes per corpus and D: the fastest, against auto's")
    parser.add_argument("--cluster", type=int, default=0, metavar="ITEMS",
                        help="with --demo or --pair: also run one real job of ITEMS items at the first of --shares "
                             "and check its threshold against the offline replay's")
    args = parser.parse_args(argv)
    pair = None
    if args.synthetic:
        scores, tuning, ratio = synthetic(20_000, 1), synthetic(2_000, 2, easy=True), 0.16
    elif args.scores:
        scores, tuning, ratio = _load(args.scores), _load(args.tuning) if args.tuning else None, 0.16
    else:
        pair = (demo_pair(args.data_dir, Path(args.cache_dir)) if args.demo else
                recipe_pair(*args.pair, args.corpus, args.data_dir, Path(args.cache_dir)))
        scores, tuning, ratio = score_pair(pair)
    ratio = args.cost_ratio if args.cost_ratio is not None else ratio
    if args.calibration is not None:
        for size in (int(s) for s in args.sizes.split(",")):
            for share in (float(s) for s in args.shares.split(",")):
                check_sample_size(args.calibration, size, share, args.confidence, args.method)
    start = time.perf_counter()
    sizes, shares = tuple(int(s) for s in args.sizes.split(",")), tuple(float(s) for s in args.shares.split(","))
    rows = replay(scores, tuning, ratio, sizes, level=args.confidence, shares=shares, runs=args.runs,
                  method=args.method, calibration=args.calibration, audit=args.audit)
    print(f"{len(scores)} scored items, {len(tuning) if tuning is not None else 0} tuning items; "
          f"cost ratio small/big {ratio:.3f}; C = {args.confidence}; bound {args.method}; audit {args.audit:g}; "
          f"{args.runs} runs; "
          f"disagreement of the whole scored set {float((scores.small != scores.big).mean()):.2%}")
    print(format_rows(rows, args.runs))
    print(f"replay took {time.perf_counter() - start:.1f} s")
    if args.frontier:
        print("\n| corpus | D | auto sample | auto, of oracle | best fixed sample | its speed, of oracle |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for size in sizes:
            for share in shares:
                auto = next(r for r in rows if (r.size, r.share, r.rule) == (size, share, "job"))
                oracle = next(r for r in rows if (r.size, r.share, r.rule) == (size, share, "oracle"))
                n, best = frontier(scores, ratio, size, share, args.confidence, args.runs, args.method, args.audit)
                print(f"| {size:,} | {share:.1%} | {auto.sample:,.0f} | {auto.speed / oracle.speed:.1%} | {n:,} | "
                      f"{best:.1%} |")
    if args.cluster and pair is not None:
        print(cluster_check(pair, scores, args.cluster, shares[0], args.confidence, Path(args.cache_dir)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GuaranteeError as exc:
        sys.exit(f"error: {exc}")
