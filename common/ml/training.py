"""Fine-tune a tier: a backbone (optionally cut to its first N layers) plus a fresh head.

A cascade needs two classifiers that share a label set, and a small tier that
agrees with the big one where it is confident. So the same loop trains both:
the big tier on gold labels, the small tier on the big tier's soft labels
(knowledge distillation). CPUs are the target, so batches are grouped by length
and padded per batch, and sequences are capped at ``max_length``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from common.errors import ConfigError, DataError
from common.ml.models import load_pretrained, truncate_layers
from common.ml.pooling import POOLING_KEY, POOLINGS, resolve_pooling, with_pooling
from common.ml.progress import Progress

log = logging.getLogger(__name__)

TRAINING_FILE = "tango_training.json"


@dataclass
class TrainingData:
    """Labelled items with their label ids into ``labels``."""

    texts: list[str]
    pairs: list[str] | None
    label_ids: np.ndarray
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> "TrainingData":
        idx = list(indices)
        return TrainingData([self.texts[i] for i in idx],
                            [self.pairs[i] for i in idx] if self.pairs else None,
                            self.label_ids[idx], list(self.labels))

    def fingerprint(self) -> str:
        """Identifies the exact items, so cached teacher logits are never reused for other data."""
        digest = hashlib.sha256()
        for i, text in enumerate(self.texts):
            digest.update(text.encode())
            digest.update(b"\x1f" + (self.pairs[i].encode() if self.pairs else b"") + b"\x1e")
        return digest.hexdigest()[:16]


@dataclass
class TrainSettings:
    """How to train one tier; saved next to the model for the record."""

    model: str
    output: str
    layer_num: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 64
    seed: int = 0
    distill_temperature: float = 2.0
    distill_alpha: float = 1.0  # weight of the soft-label loss; the rest goes to gold labels
    deferral_holdout: float = 0.0  # share of distillation items kept out to fit the deferral head on
    freeze_embeddings: bool = False  # keep the word embeddings as pretrained: a small data set cannot move
    # them far, and on a one-layer cut their update is most of each step's cost
    pooling: str = "auto"  # what the head reads: the first token (cls), the tokens' mean, or as the backbone was trained
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        checks = [(self.epochs > 0, "--epochs must be positive"),
                  (self.batch_size >= 1, "--batch-size must be at least 1"),
                  (self.learning_rate > 0, "--learning-rate must be positive"),
                  (self.max_length >= 8, "--max-length must be at least 8"),
                  (self.distill_temperature > 0, "--distill-temperature must be positive"),
                  (0.0 <= self.distill_alpha <= 1.0, "--distill-alpha must be between 0 and 1"),
                  (0.0 <= self.warmup_ratio < 1.0, "--warmup_ratio must be in [0, 1)"),
                  (0.0 <= self.deferral_holdout < 1.0, "--deferral-holdout must be in [0, 1)"),
                  (self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def label_ids_for(raw_labels: Sequence, label_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Map raw labels to ids: digits index ``label_names``, names are looked up.

    Without known names the label set is the sorted set of values seen, so a
    corpus labelled ``pos``/``neg`` trains a model whose config says so.
    """
    values = [str(v).strip() for v in raw_labels]
    if label_names:
        names = list(label_names)
        folded = [n.casefold() for n in names]
        ids = []
        for number, value in enumerate(values, start=1):
            if value.lstrip("-").isdigit() and 0 <= int(value) < len(names):
                ids.append(int(value))
            elif value.casefold() in folded:
                ids.append(folded.index(value.casefold()))
            else:
                raise DataError(f"training record {number}: label {value!r} is not one of {names}")
        return np.asarray(ids, dtype=np.int64), names
    names = sorted(set(values), key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
    if len(names) < 2:
        raise DataError(f"training data needs at least two distinct labels, found {names}")
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[v] for v in values], dtype=np.int64), names


def subsample(data: TrainingData, max_samples: int | None, seed: int = 0) -> TrainingData:
    """A seeded random subset, so a cached model and its data always match."""
    if max_samples is None or max_samples >= len(data):
        return data
    if max_samples < 1:
        raise ConfigError("--max-train-samples must be at least 1")
    rng = random.Random(seed)
    return data.subset(sorted(rng.sample(range(len(data)), max_samples)))


def train_model(settings: TrainSettings, data: TrainingData,
                teacher_logits: np.ndarray | None = None, progress: bool = True) -> Path:
    """Train and save a classifier; the directory appears only once it is complete.

    With teacher logits and ``settings.deferral_holdout`` a seeded share of the
    items is kept out of training and the deferral head is fitted on them."""
    settings.validate()
    if len(data) == 0:
        raise DataError("no training records")
    if teacher_logits is not None and teacher_logits.shape != (len(data), len(data.labels)):
        raise ConfigError(f"teacher logits have shape {teacher_logits.shape}, "
                          f"expected {(len(data), len(data.labels))}: the teacher's labels must match")
    if settings.deferral_holdout and teacher_logits is None:
        raise ConfigError("--deferral-holdout needs --teacher: the head learns where the teacher disagrees")
    train_idx, held_idx = deferral_split(len(data), settings.deferral_holdout, settings.seed)
    torch.manual_seed(settings.seed)
    model, tokenizer = _init_model(settings, data.labels)
    started = time.perf_counter()
    soft = teacher_logits[train_idx] if teacher_logits is not None else None
    losses = _fit(model, tokenizer, settings, data.subset(train_idx), soft, progress)
    seconds = time.perf_counter() - started
    out = Path(settings.output)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    record = {"settings": asdict(settings), "examples": len(train_idx), "distilled": teacher_logits is not None,
              "train_seconds": round(seconds, 1), "final_loss": losses[-1] if losses else None,
              "pooling": getattr(model.config, POOLING_KEY, "cls")}
    if held_idx:
        record["deferral"] = fit_deferral(tmp, data.subset(held_idx), teacher_logits[held_idx], progress)
    (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("saved %s (%d examples, %.0fs)", out, len(train_idx), seconds)
    return out


def deferral_split(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held out): the held-out share is drawn by seed; none when ``share`` is 0."""
    held = round(n * share)
    if held == 0:
        return list(range(n)), []
    if held >= n:
        raise ConfigError(f"--deferral-holdout {share} leaves no training items out of {n}")
    picked = set(random.Random(seed + 1).sample(range(n), held))
    return [i for i in range(n) if i not in picked], sorted(picked)


def fit_deferral(model_dir: Path, held: TrainingData, teacher: np.ndarray, progress: bool = True) -> dict:
    """Fit and save the deferral head (and the temperature) of a saved student on held-out items;
    a head that does not beat max softmax there (cross-validated AUROC) is not saved.

    The temperature is fitted on the same items against the teacher's answers:
    both say how far the student's answers can be trusted, on items it never
    trained on."""
    from common.ml.calibration import fit_temperature
    from common.ml.deferral import features, fit_head
    from common.ml.models import load_tier, write_temperature

    tier = load_tier(str(model_dir), batch_size=64)
    logits, pooled = tier.run(held.texts, held.pairs, "deferral features" if progress else None, pooled=True)
    agree = logits.argmax(axis=1) == teacher.argmax(axis=1)
    write_temperature(model_dir, fit_temperature(logits, teacher.argmax(axis=1)).temperature)
    try:
        head = fit_head(features(logits, pooled), agree)
    except DataError as exc:
        return _no_head(str(exc), {"items": len(held), "disagreements": int((~agree).sum())})
    if not head.report["cv_auroc"] > head.report["max_softmax_auroc"]:
        return _no_head(f"the head tells disagreement apart no better than max softmax on its held-out items "
                        f"(AUROC {head.report['cv_auroc']:.4f} against {head.report['max_softmax_auroc']:.4f})",
                        head.report)
    head.save(model_dir)
    return head.report


def _no_head(reason: str, report: dict) -> dict:
    """Route on max softmax, and keep why in the training record."""
    log.warning("no deferral head, the model routes on max softmax: %s", reason)
    return {**report, "skipped": reason}


def _init_model(settings: TrainSettings, labels: list[str]):
    model, tokenizer = load_pretrained(
        settings.model, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True)
    model = with_pooling(model, resolve_pooling(settings.pooling, settings.model))
    if settings.layer_num is not None:
        truncate_layers(model, settings.layer_num)
    if settings.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    model.config.problem_type = "single_label_classification"
    return model, tokenizer


def _fit(model, tokenizer, settings: TrainSettings, data: TrainingData,
         teacher_logits: np.ndarray | None, progress: bool) -> list[float]:
    encoded = tokenizer(data.texts, data.pairs, truncation=True, max_length=settings.max_length)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    rng = random.Random(settings.seed)
    epochs_full = math.ceil(settings.epochs)
    plan = [length_grouped_batches(lengths, settings.batch_size, rng) for _ in range(epochs_full)]
    steps = [b for epoch in plan for b in epoch]
    steps = steps[:max(1, round(len(plan[0]) * settings.epochs))]
    optimizer, scheduler = _optimizer(model, settings, len(steps))
    targets = torch.as_tensor(data.label_ids)
    teacher = torch.as_tensor(teacher_logits, dtype=torch.float32) if teacher_logits is not None else None
    model.train()
    losses: list[float] = []
    bar = Progress(len(steps), "training") if progress else None
    for batch in steps:
        inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        logits = model(**inputs).logits
        loss = _loss(logits, targets[batch], teacher[batch] if teacher is not None else None, settings)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if bar is not None:
            bar.update(1, loss=f"{np.mean(losses[-50:]):.4f}")
    if bar is not None:
        bar.close()
    log.info("trained %d steps, last-50 mean loss %.4f", len(steps), float(np.mean(losses[-50:])))
    return losses


def _loss(logits: torch.Tensor, gold: torch.Tensor, teacher: torch.Tensor | None,
          settings: TrainSettings) -> torch.Tensor:
    """Cross-entropy on gold labels, or the Hinton KD mix when teacher logits are given."""
    hard = F.cross_entropy(logits, gold)
    if teacher is None:
        return hard
    t = settings.distill_temperature
    soft = F.kl_div(F.log_softmax(logits / t, dim=-1), F.softmax(teacher / t, dim=-1),
                    reduction="batchmean") * t * t
    return settings.distill_alpha * soft + (1.0 - settings.distill_alpha) * hard


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length items, so dynamic padding wastes little compute."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(group[s:s + batch_size] for s in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def _optimizer(model, settings: TrainSettings, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.learning_rate)
    warmup = int(total_steps * settings.warmup_ratio)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def teacher_logits(teacher_dir: str, data: TrainingData, cache_dir: str | Path | None = None,
                   batch_size: int = 64, max_length: int = 128, progress: bool = True) -> np.ndarray:
    """The teacher's logits on ``data``, cached by teacher and data fingerprint.

    Teacher inference is the expensive half of distillation on a CPU, and the
    same logits serve every student depth and temperature tried.
    """
    from common.ml.models import load_tier

    cache = _logits_cache_path(teacher_dir, data, cache_dir)
    if cache is not None and cache.is_file():
        log.info("reusing teacher logits %s", cache)
        return np.load(cache)
    tier = load_tier(teacher_dir, batch_size=batch_size, max_length=max_length)
    _check_teacher_labels(tier.labels, data.labels, teacher_dir)
    logits = tier.logits(data.texts, data.pairs, progress="teacher logits" if progress else None)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, logits)
    return logits


def _check_teacher_labels(teacher: list[str], student: list[str], teacher_dir: str) -> None:
    if [t.casefold() for t in teacher] != [s.casefold() for s in student]:
        raise ConfigError(f"--teacher {teacher_dir}: its labels {teacher} differ from the training "
                          f"labels {student}; train the teacher on the same label set")


def _logits_cache_path(teacher_dir: str, data: TrainingData, cache_dir: str | Path | None) -> Path | None:
    if cache_dir is None:
        return None
    weights = [p for p in Path(teacher_dir).glob("*.safetensors")] + list(Path(teacher_dir).glob("*.bin"))
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(weights))
    key = hashlib.sha256(f"{Path(teacher_dir).resolve()}|{stamp}|{data.fingerprint()}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"teacher-logits-{key}.npy"


def load_task_training_data(task_name: str, data_dir: str | Path) -> TrainingData:
    """A GLUE task's ``train.tsv`` under ``data_dir`` with the task's label names."""
    from common.data.glue import get_task, read_task_file

    task = get_task(task_name)
    candidates = [Path(data_dir) / task.name / "train.tsv", Path(data_dir) / task.name.upper() / "train.tsv",
                  Path(data_dir) / "train.tsv"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"no train.tsv for task {task.name!r} under {data_dir} (expected {candidates[0]})")
    rows = read_task_file(task, path)
    ids, names = label_ids_for(rows.raw_labels, task.label_names)
    return TrainingData(rows.texts, rows.pairs, ids, names)


def dev_metrics(model_dir: str, task_name: str, data_dir: str | None = None,
                validation_file: str | None = None, batch_size: int = 64) -> dict[str, float]:
    """The task metric(s) of one trained model alone on labelled dev data."""
    from common.data.glue import gold_label_ids, load_eval_data, positive_label_id
    from common.labels import align_labels
    from common.metrics import compute_metrics
    from common.ml.models import load_tier

    data = load_eval_data(task_name, validation_file, data_dir)
    tier = load_tier(model_dir, batch_size=batch_size)
    alignment = align_labels(tier.labels, tier.labels)
    gold = gold_label_ids(data, alignment)
    preds = tier.logits(data.texts, data.pairs, progress="dev").argmax(axis=1)
    return compute_metrics(data.task.name, preds, gold, positive_label_id(data.task, alignment))
