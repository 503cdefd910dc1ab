"""The chaos scenario of ``tests/chaos/test_kills.py`` at a larger size: how many items a job loses or
counts twice while tier-1 and tier-2 workers are SIGKILLed and replaced (it should be none).

    python bench/chaos_cluster.py --items 20000 --kills 5

Runs a throwaway redis-server, two tier-1 and two tier-2 ``celery worker`` processes with tiny
random models, submits the job with the real CLI, kills workers (first pool processes, whose task
comes back at once; then whole workers, whose task comes back after the visibility timeout) and
replaces them, then accounts for every item from Redis and ``tango results``. Prints
``kills N``, ``lost N``, ``duplicated N`` and the other figures, one per line.
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
    with tempfile.TemporaryDirectory(prefix="tango-chaos-") as tmp:
        root = Path(tmp)
        figures = chaos_scenario(root, models(root / "models", sample), sample, args.items, args.kills,
                                 args.chunk_size, args.visibility_timeout)
    print(figures.report())
    return 0 if (figures.lost, figures.duplicated, figures.state) == (0, 0, "done") else 1


if __name__ == "__main__":
    sys.exit(main())
