"""Which model pair a benchmark runs: the SST-2 reproduction's, when it is built, else stand-ins.

The reproduction (bench/reproduce_sst2.py) caches its fine-tuned MPNet (big) and distilled
1- or 2-layer MiniLM (small) under ~/.cache/tango/repro. When they are not there yet, the
benchmarks say so and use random BERTs of a similar cost ratio instead, clearly labelled:
their accuracy means nothing, their timings still show the overheads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPRO_CACHE = Path.home() / ".cache" / "tango" / "repro"
from bench.harness import SST2


@dataclass(frozen=True)
class Pair:
    small: Path
    big: Path
    label: str  # what to print next to every figure
    real: bool


def reproduction_pair(cache: Path = REPRO_CACHE) -> Pair | None:
    """The reproduction's big model and its smallest distilled student, if both are complete."""
    for big in sorted(cache.glob("big-mpnet-sst2-*")):
        if not (big / "config.json").is_file() or big.name.endswith(".partial"):
            continue
        smalls = sorted(p for p in cache.glob(f"small-minilm-L*-kd-{big.name}-*")
                        if (p / "config.json").is_file() and not p.name.endswith(".partial"))
        if smalls:
            return Pair(smalls[0], big, f"reproduction pair: {smalls[0].name} / {big.name}", True)
    return None


def stand_in_pair(directory: Path) -> Pair:
    """Random BERTs: 1 layer x 128 hidden (small) and 6 layers x 384 hidden (big), one tokenizer."""
    from common.testing.tiny import build_tiny_model, build_tokenizer

    texts = [line.split("\t")[0] for line in (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()[1:20000]]
    tokenizer = build_tokenizer(texts, vocab_size=8000)
    labels = ["negative", "positive"]
    small = build_tiny_model(directory / "small", labels, layers=1, hidden=128, tokenizer=tokenizer, seed=1)
    big = build_tiny_model(directory / "big", labels, layers=6, hidden=384, tokenizer=tokenizer, seed=2)
    return Pair(small, big, "STAND-IN random BERTs (1x128 small, 6x384 big): the reproduction pair is not "
                            f"built yet under {REPRO_CACHE}; accuracy figures are meaningless", False)


def given_pair(small: str, big: str) -> Pair:
    """Model directories named on the command line; thresholds are then picked as for stand-ins, so
    untrained heads on real backbones still send a fixed share on."""
    return Pair(Path(small), Path(big), f"given models: {small} / {big}", False)


def choose_pair(directory: Path, force_stand_in: bool = False) -> Pair:
    return (None if force_stand_in else reproduction_pair()) or stand_in_pair(directory)


def sst2_dev() -> tuple[list[str], list[str]]:
    """SST-2 dev sentences and their gold labels as names."""
    rows = [line.split("\t") for line in (SST2 / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    return [text for text, _ in rows], [("negative", "positive")[int(label)] for _, label in rows]


def pick_threshold(pair: Pair, small, texts: list[str], requested: float | None, escalate: float = 0.25) -> float:
    """``requested``, else 0.9 for the real pair, else the confidence below which ``escalate``
    of the stand-in small model's answers fall (random models have no meaningful 0.9)."""
    if requested is not None:
        return requested
    if pair.real:
        return 0.9
    import numpy as np

    return float(np.quantile(small.probabilities(texts).max(axis=1), escalate))
