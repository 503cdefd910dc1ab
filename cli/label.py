"""``tango label``: the cascade in-process on a corpus, no Redis, same output as ``tango results``.

The corpus is streamed through the cascade in chunks, so memory stays flat in
the corpus size; each chunk runs ``common.cascade.Cascade``, the very routing
the cluster's workers apply. With the same ``--chunk-size`` as ``submit`` (``auto``
picks the same for the same corpus, unless submit's ``--window`` is below it)
every model batch holds the same items as in the cluster, so scores
match bit for bit; other sizes change only float rounding (about 1e-6), since
padding a batch to another length perturbs float32 sums.

``--audit R`` runs the big model also on the audit sample of the items the
small one accepted, the very sample a cluster job with id ``--seed`` draws
(``common.sampling.audit_mask`` of the key and the item's input position), in a
batch of its own per chunk as the cluster's tier 2 does, so the labels written
are unchanged; the agreement estimate goes to stderr.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import click

from cli.options import (CONTEXT, audit_option, backend_option, chunk_size_option, corpus_options, corpus_spec,
                         output_format, output_options)
from common.queue.config import resolve_chunk_size
from common.data.corpus import Item, read_corpus, summarize


@click.command("label", context_settings=CONTEXT)
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("--small", required=True, metavar="S", help="Tier-1 (small) model directory or hub id.")
@click.option("--big", required=True, metavar="B", help="Tier-2 (big) model directory or hub id.")
@click.option("--threshold", type=float, default=0.9, show_default=True, metavar="T",
              help="Items whose tier-1 confidence is at or above T stop at tier 1.")
@chunk_size_option
@click.option("--device", default="cpu", show_default=True, help="Device for both models.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Batch size of both models.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (as `tango worker --threads`; float sums depend on the thread count).")
@click.option("--quantize", is_flag=True, help="Dynamic int8 quantization of both models' Linear layers (CPU).")
@backend_option
@click.option("--label-map", default=None, metavar="FROM=TO,...", help="Rename model labels before matching the tiers.")
@audit_option
@click.option("--seed", default=None, metavar="KEY",
              help="Draw the audit sample a cluster job with this id draws (default: a new id, printed).")
@output_options("--output-format")
@corpus_options
def label_command(input_path: str, small: str, big: str, threshold: float, chunk_size: int | None, device: str,
                  batch_size: int, threads: int | None, quantize: bool, backend: str, label_map: str | None, audit: float,
                  seed: str | None, output: str, out_format: str | None, fmt: str | None, text_column: str,
                  pair_column: str | None, id_column: str, label_column: str) -> None:
    """Label INPUT with the cascade in this process and write one result per item, in input order."""
    from common.cascade import Cascade, validate_audit_rate, validate_threshold
    from common.labels import align_labels, model_labels, parse_label_map
    from common.ml.models import load_tier
    from common.queue.keys import new_job_id
    from common.queue.results import write_records

    checks = LabelAudit(seed or new_job_id(), validate_audit_rate(audit)) if audit else None

    if threads:
        import torch

        torch.set_num_threads(threads)
    # the label set from the models' configs, as `submit --small --big` finds it, so that both commands
    # check the threshold and the gold labels alike, before any weights are loaded
    labels = align_labels(model_labels(small), model_labels(big), parse_label_map(label_map)).labels
    threshold = validate_threshold(threshold, len(labels), option="--threshold")
    spec = dataclasses.replace(corpus_spec(fmt, text_column, pair_column, id_column, label_column),
                               labels=tuple(labels))
    summary = summarize(input_path, spec)
    chunk_size = resolve_chunk_size(chunk_size, summary.items)
    small_model = load_tier(small, device=device, batch_size=batch_size, quantize=quantize, backend=backend)
    big_model = load_tier(big, device=device, batch_size=batch_size, quantize=quantize, backend=backend)
    cascade = Cascade(small_model, big_model, threshold,
                      align_labels(small_model.labels, big_model.labels, parse_label_map(label_map)))
    start = time.perf_counter()
    stats = {"tier2": 0, "items": 0}
    with click.open_file(output, "w", encoding="utf-8", atomic=output != "-") as out:
        write_records(label_items(cascade, read_corpus(input_path, spec, duplicates=summary.duplicate_lines),
                                  (small, big), stats, chunk_size, checks),
                      out, output_format(output, out_format))
    seconds = time.perf_counter() - start
    click.echo(f"labelled {stats['items']} of {summary.items} items in {seconds:.2f} s "
               f"({stats['items'] / max(seconds, 1e-9):.1f} items/s), "
               f"{stats['tier2'] / max(stats['items'], 1):.1%} sent to tier 2", err=True)
    if checks:
        click.echo(checks.describe(stats["items"] - stats["tier2"], stats["tier2"]), err=True)


@dataclass
class LabelAudit:
    """The cluster's audit in this process: the big model on the sample ``key`` draws of the accepted items."""

    key: str
    rate: float
    audited: int = 0
    agreed: int = 0

    def check(self, cascade, output, first: int, texts: Sequence[str], pairs: Sequence[str] | None) -> None:
        """Check one chunk's accepted items that the sample picks; ``first`` is the chunk's first input position."""
        import numpy as np

        from common.cascade import TIER_SMALL, answers
        from common.sampling import audit_mask

        accepted = np.flatnonzero(output.tiers == TIER_SMALL)
        picked = accepted[audit_mask(self.key, accepted + first, self.rate)]
        if not len(picked):
            return
        probs = cascade.big.probabilities([texts[i] for i in picked], [pairs[i] for i in picked] if pairs else None)
        big_ids, _ = answers(probs, cascade.alignment.big_to_canonical)
        self.audited += len(picked)
        self.agreed += int((big_ids == output.label_ids[picked]).sum())

    def describe(self, accepted: int, escalated: int) -> str:
        """The lines ``tango status`` shows for a job, for this run."""
        from common.queue.audit import audit_report

        lines = audit_report(self.rate, accepted, escalated, self.audited, self.agreed).lines()
        return "\n".join([*lines, f"audit key {self.key} (--seed {self.key} draws the same sample)"])


def label_items(cascade, items: Iterator[Item], names: tuple[str, str], stats: dict, chunk_size: int,
                audit: LabelAudit | None = None):
    """Yield a ``ResultRecord`` per item, running the cascade one chunk at a time (and the audit's checks)."""
    from common.queue.results import ResultRecord

    first = 0
    for batch in _chunks(items, chunk_size):
        pairs = [item.text_pair or "" for item in batch] if any(i.text_pair is not None for i in batch) else None
        texts = [item.text for item in batch]
        output = cascade.run(texts, pairs)
        if audit:
            audit.check(cascade, output, first, texts, pairs)
        first += len(batch)
        for item, record in zip(batch, output.records()):
            stats["items"] += 1
            stats["tier2"] += record["tier"] == 2
            yield ResultRecord(item.id, record["label"], record["score"], record["tier"], names[record["tier"] - 1])


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
