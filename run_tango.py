#!/usr/bin/env python
"""Seed-compatible entry point: the TangoBERT research script's flags, on tango's cascade.

    python run_tango.py --task_name sst2 --small_model_name_or_path S \
        --big_model_name_or_path B --confidence_threshold 0.9 --data-dir ../shared/data/glue
"""
import sys

from cli.evaluate import eval_command
from cli.main import run, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(run(eval_command, prog_name="run_tango.py"))
