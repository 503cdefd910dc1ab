"""The chaos scenario of ``tests/chaos/test_kills.py`` at a larger size: how many items a job loses or
counts twice while tier-1 and tier-2 workers are SIGKILLed and replaced (it should be none).

    python bench/chaos_cluster.py --items 20000 --kills 5
    python bench/chaos_cluster.py --items 20000 --kills 5 --runs 20    # how many runs end by themselves

Runs a throwaway redis-server, two tier-1 and two tier-2 ``celery worker`` processes with tiny
random models, submits the job with the real CLI, kills workers (first pool processes, whose task
comes back at once; then whole workers, whose task comes back after the visibility timeout) and
replaces them, then accounts for every item from Redis and ``tango results``. Prints
``kills N``, ``lost N``, ``duplicated N`` and the other figures, one per line; with ``--runs``, one
line per run (each with its own seed for which workers die and when) and how many ended by themselves.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GLUE = ROOT.parent / "shared" / "data" / "glue" / "sst2" / "train.tsv"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000, help="items in the job")
    parser.add_argument("--kills", type=int, default=5, help="kills per tier (the first half pool processes)")
    parser.add_argument("--chunk-size", type=int, default=10, help="items per tier-1 task")
    parser.add_argument("--runs", type=int, default=1, help="repeat the scenario, each run with the next seed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run's kill victims and moments")
    parser.add_argument("--stall-timeout", type=float, default=300.0,
                        help="seconds `tango wait` waits before the run counts as stalled")
    parser.add_argument("--visibility-timeout", type=float, default=4.0,
                        help="seconds before a dead worker's task is delivered again")
    return parser.parse_args()


def texts() -> list[str]:
    rows = GLUE.read_text(encoding="utf-8").splitlines()[1:5001] if GLUE.is_file() else []
    return [row.split("\t")[0] for row in rows] or ["a good film", "a bad film", "a film"]


def models(directory: Path, sample: list[str]) -> dict[str, Path]:
    from common.testing.tiny import build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer(sample)
    labels = ["negative", "positive"]
    return {"small": build_tiny_model(directory / "small", labels, layers=1, seed=1, tokenizer=tokenizer),
            "big": build_tiny_model(directory / "big", labels, layers=3, seed=2, tokenizer=tokenizer)}


def main() -> int:
    from common.testing.chaos import chaos_scenario

    args = parse_args()
    sample = texts()
    clean = struck = 0
    with tempfile.TemporaryDirectory(prefix="tango-chaos-") as tmp:
        pair = models(Path(tmp) / "models", sample)
        for run in range(args.runs):
            root = Path(tmp) / f"run{run}"
            root.mkdir()
            figures = chaos_scenario(root, pair, sample, args.items, args.kills, args.chunk_size,
                                     args.visibility_timeout, seed=args.seed + run, stall_timeout=args.stall_timeout)
            clean += figures.clean and figures.struck
            struck += figures.struck
            if args.runs == 1:
                print(figures.report())
            else:
                print(f"run {run + 1} (seed {args.seed + run}): " + ", ".join(figures.report().splitlines()),
                      flush=True)
    if args.runs > 1:
        print(f"{clean} of {struck} runs ended by themselves with lost 0 and duplicated 0 "
              f"(no --resume-stalled; a run that did not end within {args.stall_timeout:.0f} s counts as stalled"
              + (f"; {args.runs - struck} runs in which no kill landed are not counted)" if struck < args.runs else ")"))
    return 0 if clean == struck == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
