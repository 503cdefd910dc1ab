#!/usr/bin/env bash
# The GPU check, to run whenever a GPU machine is at hand (a few minutes): tier 2 on CUDA in fp32 and
# bf16 against the same model on the CPU, per-item cost by batch size, then a tier-2 worker against a
# backlog on each (its batcher's mean batch and items/s), on the reproduction's big model when it is
# cached (~/.cache/tango/repro), else on the stand-in. Record what it prints in bench/RESULTS.md.
#
#   bash bench/gpu_check.sh            # needs torch with CUDA: pip install torch==2.13.0 from the CUDA index
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
stand_in=$(python -c "from bench.pairs import reproduction_pair; print('' if reproduction_pair() else '--stand-in')")
common=(--tier big --items 2048 --rounds 3 $stand_in)
python bench/batch_cost.py "${common[@]}" --device cpu --threads "$(nproc)" --sizes 8 32 --items 512
python bench/batch_cost.py "${common[@]}" --device cuda --precision fp32 --sizes 8 32 128 512
python bench/batch_cost.py "${common[@]}" --device cuda --precision bf16 --sizes 8 32 128 512
# the tier-2 batcher's fill and tier 2's throughput against a backlog: all the CPU's cores, then the GPU
backlog=(--items 4000 --variants batcher --max-wait-ms 50 $stand_in)
python bench/tier2_backlog.py "${backlog[@]}" --device cpu --threads "$(nproc)" --batch-size 32
python bench/tier2_backlog.py "${backlog[@]}" --device cuda --precision bf16 --batch-size 128
