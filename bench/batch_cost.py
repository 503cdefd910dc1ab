"""Per-item cost of a model against its batch size: does tier 2 gain from bigger batches here?

Cross-chunk batching pays exactly when the per-item cost falls with the batch size. The items
are SST-2 dev sentences in random order (as tier 2 receives them); sizes are measured
interleaved, round after round, and the fastest round counts.

    python bench/batch_cost.py --sizes 4 8 16 32 64 --threads 1
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.harness import machine  # noqa: E402
from bench.pairs import choose_pair, sst2_dev  # noqa: E402
from common.ml.models import load_tier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tier", choices=["small", "big"], default="big")
    parser.add_argument("--model-batch", type=int, default=None,
                        help="fix the model's batch size: --sizes are then how many items one call gets "
                             "(the model sorts them by length and pads each batch less)")
    parser.add_argument("--stand-in", action="store_true")
    parser.add_argument("--model", default=None, help="measure this model directory instead of a pair's tier")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (bench/gpu_check.sh)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="half precision: GPU only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, _ = sst2_dev()
    random.Random(0).shuffle(texts)
    texts = texts[:args.items]
    with tempfile.TemporaryDirectory(prefix="tango-batch-cost-") as tmp:
        if args.model:
            path, label = Path(args.model), args.model
        else:
            pair = choose_pair(Path(tmp), args.stand_in)
            path, label = (pair.big if args.tier == "big" else pair.small), f"{args.tier} of {pair.label}"
        models = {size: load_tier(str(path), batch_size=args.model_batch or size, device=args.device,
                                  precision=args.precision) for size in args.sizes}
        print(f"machine: {machine()}")
        print(f"model: {label} on {args.device} in {args.precision}; {len(texts)} SST-2 dev items, "
              f"{args.threads} torch thread(s), "
              f"model batch {args.model_batch or 'as the call'}")
        models[args.sizes[0]].logits(texts[:8])
        best = {size: float("inf") for size in args.sizes}
        for _ in range(args.rounds):
            for size, model in models.items():
                start = time.perf_counter()
                for s in range(0, len(texts), size):  # one call per batch, as tier 2 gets them
                    model.logits(texts[s:s + size])
                best[size] = min(best[size], time.perf_counter() - start)
    base = best[args.sizes[0]]
    for size in args.sizes:
        print(f"{'call' if args.model_batch else 'batch'} {size:>4}: {1000 * best[size] / len(texts):.2f} ms per item "
              f"({base / best[size]:.2f}x the throughput of batch {args.sizes[0]})")


if __name__ == "__main__":
    main()
