"""``tango train``: fine-tune a tier from a backbone, optionally cut and distilled from a big tier."""
from __future__ import annotations

import json
from pathlib import Path

import click

from cli.options import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("--model", required=True, metavar="BACKBONE",
              help="Backbone to fine-tune: a local model directory or a hub id. A fresh classification "
                   "head is added for the training labels. sentence-transformers/all-MiniLM-L6-v2 and (with "
                   "the repro extra) sentence-transformers/all-mpnet-base-v2 are found offline in the install.")
@click.option("--task", "task_name", default=None, metavar="TASK",
              help="GLUE task to train on: reads <data_dir>/<task>/train.tsv and uses the task's label names.")
@click.option("--data-dir", default=None, metavar="DIR", help="GLUE directory for --task.")
@click.option("--train-file", default=None, metavar="FILE",
              help="A labelled corpus (jsonl, csv, tsv or parquet with text, optional text_pair, and label) "
                   "instead of --task. Label names are taken from its label column.")
@click.option("--text-column", "text_field", default=None, metavar="NAME",
              help="Field holding the text in --train-file (default: text).")
@click.option("--output", required=True, metavar="DIR", help="Where the trained model is saved (replaced if present).")
@click.option("--layer-num", type=int, default=None, metavar="N",
              help="Keep only the first N transformer layers of the backbone: a cheap tier cut from it.")
@click.option("--epochs", type=float, default=1.0, show_default=True, metavar="E",
              help="Passes over the training data (fractions allowed).")
@click.option("--max-train-samples", type=int, default=None, metavar="N",
              help="Train on a seeded random subset of N examples.")
@click.option("--teacher", default=None, metavar="BIG_MODEL_DIR",
              help="Distil: train on this model's soft labels (same label names) instead of the gold labels alone.")
@click.option("--augment", type=int, default=0, show_default=True, metavar="N",
              help="With --teacher: also distil on N texts made by joining two or three training sentences, "
                   "labelled by the teacher. Phrase-level training data then also teaches sentence-length inputs.")
@click.option("--distill-temperature", type=float, default=2.0, show_default=True, metavar="T",
              help="Softmax temperature of the distillation loss.")
@click.option("--distill-alpha", type=float, default=1.0, show_default=True, metavar="A",
              help="Weight of the soft-label loss; 1-A goes to the gold labels.")
@click.option("--deferral-holdout", type=float, default=0.0, show_default=True, metavar="SHARE",
              help="With --teacher: keep this share of the items out of training and fit a deferral head on "
                   "them (the student's estimate that the teacher gives its label), saved beside the model. "
                   "Every command then routes on it instead of max softmax; 0.1 is a good start.")
@click.option("--freeze-embeddings", is_flag=True,
              help="Keep the backbone's word embeddings as pretrained: on a few thousand examples they barely "
                   "move, and on a one- or two-layer cut their update is most of each step's cost.")
@click.option("--pooling", type=click.Choice(["auto", "cls", "mean"]), default="auto", show_default=True,
              help="What the classifier head reads: the first token (cls), the mean of the tokens, or (auto) "
                   "the mean for a sentence-transformers backbone trained that way (all-MiniLM-L6-v2, "
                   "all-mpnet-base-v2), else the first token. Saved in the model's config.")
@click.option("--learning-rate", type=float, default=5e-5, show_default=True, metavar="LR", help="Peak AdamW learning rate.")
@click.option("--batch-size", type=int, default=32, show_default=True, metavar="N", help="Training batch size.")
@click.option("--max-length", type=int, default=64, show_default=True, metavar="N",
              help="Truncate inputs to N tokens (batches are padded only to their longest item).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the subset, shuffling and the head.")
@click.option("--cache-dir", "cache_dir", default=None, metavar="DIR",
              help="Cache the teacher's logits here, so repeated distillations skip teacher inference.")
@click.option("--validation-file", default=None, metavar="FILE",
              help="Labelled data for the dev metric at the end (default: the task's dev set when --task is given).")
def train_command(model: str, task_name: str | None, data_dir: str | None, train_file: str | None,
                  text_field: str | None, output: str, layer_num: int | None, epochs: float,
                  max_train_samples: int | None, teacher: str | None, augment: int, distill_temperature: float,
                  distill_alpha: float, deferral_holdout: float, freeze_embeddings: bool, pooling: str, learning_rate: float,
                  batch_size: int, max_length: int, seed: int, cache_dir: str | None, validation_file: str | None) -> None:
    """Fine-tune a sequence classifier to serve as a cascade tier.

    Label names are saved in the model config (id2label), so the two tiers can be
    matched by name. With --layer-num the backbone is cut to its first N layers;
    with --teacher the model learns the big model's soft labels (knowledge
    distillation), which makes a small tier agree with the big one where it is
    confident. Prints the dev metric at the end when dev data is known.
    """
    from common.errors import ConfigError
    from common.ml.augment import augmented, teacher_labelled
    from common.ml.backbones import resolve_backbone
    from common.ml.training import TrainSettings, subsample, teacher_logits, train_model

    if augment and not teacher:
        raise ConfigError("--augment needs --teacher: the made-up texts have no labels but the teacher's")
    model, packaged = resolve_backbone(model)
    if packaged:
        click.echo(packaged, err=True)
    data = _load(task_name, data_dir, train_file, text_field)
    data = subsample(data, max_train_samples, seed)
    settings = TrainSettings(model=model, output=output, layer_num=layer_num, epochs=epochs,
                             batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
                             seed=seed, distill_temperature=distill_temperature, distill_alpha=distill_alpha,
                             deferral_holdout=deferral_holdout, freeze_embeddings=freeze_embeddings, pooling=pooling)
    settings.validate()
    sentences = len(data)
    data = augmented(data, augment, seed)
    soft = None
    if teacher:
        click.echo(f"computing the teacher's logits on {len(data)} examples"
                   + (f" ({augment} of them made by --augment)" if augment else "") + " ...", err=True)
        soft = teacher_logits(teacher, data, cache_dir=cache_dir)
        data = teacher_labelled(data, soft, sentences)
    click.echo(f"training {model} on {len(data)} examples ({', '.join(data.labels)})"
               + (f", first {layer_num} layers" if layer_num else "") + (", distilled" if teacher else ""), err=True)
    out = train_model(settings, data, teacher_logits=soft)
    click.echo(f"saved {out}")
    _report_deferral(out, deferral_holdout)
    _report_dev(out, task_name, data_dir, validation_file)


def _load(task_name: str | None, data_dir: str | None, train_file: str | None, text_field: str | None):
    from common.errors import ConfigError
    from common.ml.training import load_task_training_data

    if bool(task_name) == bool(train_file):
        raise ConfigError("pass exactly one of --task (with --data-dir) or --train-file")
    if task_name:
        if not data_dir:
            raise ConfigError("--task needs --data-dir (a GLUE directory holding <task>/train.tsv)")
        return load_task_training_data(task_name, data_dir)
    return load_train_file(train_file, text_field)


def load_train_file(path: str, text_field: str | None = None):
    """A labelled corpus as training data, read by the shared corpus parser; every item needs a label."""
    from common.data.batches import pair_texts
    from common.data.corpus import CorpusSpec, read_corpus
    from common.errors import DataError
    from common.ml.training import TrainingData, label_ids_for

    items = list(read_corpus(path, CorpusSpec(text_column=text_field or "text")))
    if not items:
        raise DataError(f"{path}: no records")
    unlabelled = next((item for item in items if item.label is None), None)
    if unlabelled is not None:
        raise DataError(f"{path}, line {unlabelled.line}: missing label (training needs a 'label' field)")
    ids, names = label_ids_for([item.label for item in items])
    pairs = pair_texts(items)
    return TrainingData([item.text for item in items], pairs, ids, names)


def _report_deferral(model_dir: Path, deferral_holdout: float) -> None:
    from common.ml.deferral import DeferralHead

    head = DeferralHead.load(model_dir)
    if head is None and deferral_holdout:
        click.echo("no deferral head was fitted (see the warning above): the model routes on max softmax", err=True)
    if head is not None:
        r = head.report
        click.echo(f"deferral head: fitted on {r['items']} held-out items ({r['disagreements']} disagree with the "
                   f"teacher); AUROC at telling them apart {r['cv_auroc']:.3f} cross-validated, max softmax "
                   f"{r['max_softmax_auroc']:.3f}")


def _report_dev(model_dir: Path, task_name: str | None, data_dir: str | None, validation_file: str | None) -> None:
    if not (validation_file or (task_name and data_dir)):
        return
    from common.ml.training import dev_metrics

    metrics = dev_metrics(str(model_dir), task_name or "sst2", data_dir, validation_file)
    click.echo("dev " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
