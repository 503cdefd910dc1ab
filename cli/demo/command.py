"""``tango demo``: the README's first command -- build a small/big pair once, label a corpus, show the gain."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from cli.options import CONTEXT

if TYPE_CHECKING:
    from cli.demo.pipeline import DemoResult, DemoSettings

DEFAULT_CACHE = Path.home() / ".cache" / "tango" / "demo"


@click.command(context_settings=CONTEXT)
@click.option("--data-dir", default=None, metavar="DIR",
              help="A GLUE directory holding sst2/train.tsv and sst2/dev.tsv: train on SST-2 and label its "
                   "dev set. Without it the demo uses the sample reviews shipped with tango.")
@click.option("--cache-dir", "cache_dir", default=str(DEFAULT_CACHE), show_default=True, metavar="DIR",
              help="Where the trained pair is kept; a second run with the same options reuses it.")
@click.option("--quick", is_flag=True,
              help="Reduced mode for CI and a first look: few training examples and epochs.")
@click.option("--max-train-samples", "max_train_samples", type=click.IntRange(min=8), default=None, metavar="N",
              help="Training examples (default 3000 from SST-2, 120 with --quick; the sample set has 292).")
@click.option("--max-corpus-items", "max_corpus_items", type=click.IntRange(min=1), default=None, metavar="N",
              help="Label only the first N corpus items.")
@click.option("--threshold", type=click.FloatRange(0.5, 1.0), default=None, metavar="T",
              help="Items whose tier-1 confidence is at or above T stop at tier 1. Default: the fastest "
                   "threshold whose accuracy drop against the big model is certified within --max-drop points "
                   "(90% confidence) on held-out items neither model trained on.")
@click.option("--max-drop", "max_drop", type=click.FloatRange(0.0, 100.0), default=1.0, show_default=True,
              metavar="POINTS", help="Accuracy points the cascade may lose when the threshold is chosen for you.")
@click.option("--max-disagreement", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.03,
              show_default=True, metavar="D",
              help="The job-level promise shown at the end: what `tango label --max-disagreement D` would certify "
                   "on a seeded sample of this corpus, what the sample costs and what it buys.")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Inference batch size of both tiers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data splits and training.")
@click.option("--redis-url", "redis_url", default=None, metavar="URL",
              help="Label the corpus through the cluster at this Redis URL instead of in-process: the demo "
                   "starts one `tango worker` per tier (unless that Redis already has workers for it), "
                   "submits the corpus, waits, reads the results back and stops the workers it started. "
                   "The speedup is then the job's wall time against the big model alone in-process.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object on stdout.")
def demo_command(data_dir: str | None, cache_dir: str, quick: bool, max_train_samples: int | None,
                 max_corpus_items: int | None, threshold: float | None, max_drop: float, max_disagreement: float,
                 batch_size: int, seed: int,
                 redis_url: str | None, as_json: bool) -> None:
    """Build a MiniLM cascade and label a sample corpus with it, offline.

    The big tier is the packaged MiniLM (6 layers) fine-tuned on the data; the
    small tier is its first layer, distilled from the big tier, with a deferral head
    that estimates where the two agree.
    Both are cached. Then the corpus is labelled through the cascade and by the
    big model alone, side by side: the demo prints how many items each tier
    decided, the speedup, the accuracy against the known labels, and the bound
    on the accuracy drop the threshold was chosen with. Last, the job-level
    promise: what a job that names its quality (--max-disagreement) would
    certify on a sample of this corpus, what the sample costs and buys.

    With --redis-url the corpus goes through a real cluster (Celery workers on
    that Redis) instead, with the same labels as in-process, plus the job id.
    """
    from cli.demo.pipeline import DemoSettings, format_result, run_demo

    settings = DemoSettings(cache_dir=Path(cache_dir), data_dir=data_dir, quick=quick,
                            max_train_samples=max_train_samples, max_corpus_items=max_corpus_items,
                            threshold=threshold, max_drop=max_drop, max_disagreement=max_disagreement, seed=seed,
                            batch_size=batch_size)

    def say(line: str) -> None:
        click.echo(line, err=True)

    if redis_url:
        result = _through_cluster(settings, redis_url, say)
    else:
        result = run_demo(settings, say=say)
    click.echo(json.dumps(result.as_dict()) if as_json else format_result(result))


def _through_cluster(settings: "DemoSettings", redis_url: str, say: Callable[[str], None]) -> "DemoResult":
    """Reach Redis first (an unreachable one is one line, exit 3, before minutes of training)."""
    from cli.options import redis_errors
    from common.queue.config import ClusterSettings
    from cli.demo.pipeline import run_demo
    from cli.demo.cluster import ClusterLabeller
    from common.queue.store import ResultStore

    cluster = ClusterSettings.from_env(redis_url)
    store = ResultStore.open(cluster)
    with redis_errors(cluster):
        return run_demo(settings, say, through=ClusterLabeller(store, cluster, settings.batch_size, say))
