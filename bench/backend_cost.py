"""Tiers on ONNX Runtime against torch: per-item cost, and what int8 does to tier 1's confidences.

Each model is measured as the workers run it: batches of ``--batch-size`` SST-2 dev sentences,
one call per batch, ``--threads`` threads, torch and ONNX Runtime in fp32 and int8 (torch's
dynamic quantization against ONNX Runtime's), the variants interleaved round after round and the
fastest round kept. A model given by name (``minilm``, ``mpnet``) is the packaged backbone with a
classification head saved once, so that every variant reads the same weights. For each model it
prints ms per item, each variant's speed against torch fp32, the largest probability difference
from torch fp32 and the share of labels that change; and, for the confidences that route tier 1,
the rank correlation with torch fp32 and the share of items each variant would send to tier 2 at
the threshold that sends 15% there in torch fp32.

    python bench/backend_cost.py --models minilm mpnet --threads 1 --batch-size 32
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.harness import machine  # noqa: E402
from bench.pairs import sst2_dev  # noqa: E402
from common.ml.models import TierModel, load_pretrained, load_tier  # noqa: E402

VARIANTS = {"torch fp32": ("torch", False), "onnx fp32": ("onnx", False),
            "torch int8": ("torch", True), "onnx int8": ("onnx", True)}
ESCALATED = 0.15  # the fp32 tier-2 share the int8 variants are compared at


def model_dir(name: str, root: Path) -> Path:
    """A directory as given, or a packaged backbone with a two-label head saved once (fixed weights)."""
    if name not in ("minilm", "mpnet"):
        return Path(name)
    from common.ml.backbones import minilm_dir, mpnet_backbone

    backbone = str(minilm_dir()) if name == "minilm" else mpnet_backbone(Path.home() / ".cache" / "tango" / "repro"
                                                                         / "backbones")
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(backbone, num_labels=2, id2label={0: "negative", 1: "positive"},
                                       label2id={"negative": 0, "positive": 1})
    out = root / name
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def timed(tiers: dict[str, TierModel], texts: list[str], batch: int, rounds: int) -> dict[str, float]:
    """Best seconds per item of each variant, the variants interleaved round after round."""
    best = {name: float("inf") for name in tiers}
    for _ in range(rounds):
        for name, tier in tiers.items():
            start = time.perf_counter()
            for s in range(0, len(texts), batch):
                tier.logits(texts[s:s + batch])
            best[name] = min(best[name], (time.perf_counter() - start) / len(texts))
    return best


def report(label: str, tiers: dict[str, TierModel], texts: list[str], args: argparse.Namespace) -> None:
    from scipy.stats import spearmanr

    probs = {name: tier.probabilities(texts) for name, tier in tiers.items()}
    cost = timed(tiers, texts[:args.items], args.batch_size, args.rounds)
    base, conf = probs["torch fp32"], probs["torch fp32"].max(axis=1)
    threshold = float(np.quantile(conf, ESCALATED))
    print(f"{label}: {tiers['torch fp32'].num_layers} layers, batch {args.batch_size}, {args.threads} thread(s)")
    for name in tiers:
        p = probs[name]
        rho = spearmanr(conf, p.max(axis=1)).statistic
        print(f"  {name:<10} {1000 * cost[name]:6.2f} ms/item  {cost['torch fp32'] / cost[name]:.2f}x torch fp32  "
              f"max prob diff {np.abs(p - base).max():.2e}  labels changed {(p.argmax(1) != base.argmax(1)).mean():.1%}"
              f"  confidence rank corr {rho:.4f}  to tier 2 at the fp32 {ESCALATED:.0%} threshold "
              f"{(p.max(axis=1) < threshold).mean():.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "mpnet"],
                        help="model directories, or minilm / mpnet (packaged backbones; mpnet needs the repro extra)")
    parser.add_argument("--batch-size", type=int, default=32, help="the workers' default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--items", type=int, default=256, help="items timed per round (all 872 for the figures)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, _ = sst2_dev()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="tango-backend-") as tmp:
        for name in args.models:
            path = model_dir(name, Path(tmp))
            tiers = {variant: load_tier(str(path), batch_size=args.batch_size, backend=backend, quantize=int8)
                     for variant, (backend, int8) in VARIANTS.items()}
            report(name, tiers, texts, args)


if __name__ == "__main__":
    main()
