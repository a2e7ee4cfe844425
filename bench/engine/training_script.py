"""What the training scripts (``scripts/train_*.py``) share once their options are parsed: the
start of a run (log lines, ``--threads``, the seeds, where the checkpoint goes) and the command
line their record keeps."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from bench.core.paths import ROOT


def start_training(args: argparse.Namespace, default_name: str) -> tuple[Path, torch.Generator]:
    """Log lines to stderr, ``--threads``, torch's seed (``--seed``); returns the checkpoint path
    without suffix (``--out``, else ``results/reference/models/<default_name>``) and a generator
    seeded with ``--seed`` (batch order, augmentation)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else ROOT / "results" / "reference" / "models" / default_name
    torch.manual_seed(args.seed)
    return out, torch.Generator().manual_seed(args.seed)


def command_line(script: str, argv: list[str] | None) -> str:
    """``python scripts/<script> <arguments>``, as the script was called."""
    return f"python scripts/{script} " + " ".join(sys.argv[1:] if argv is None else argv)
