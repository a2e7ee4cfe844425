"""What the training scripts (``scripts/train_*.py``) share once their options are parsed: the
start of a run (log lines, ``--threads``, the seeds, where the checkpoint goes) and the command
line their record keeps."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from bench.core.paths import ROOT
from bench.engine.training import accuracy, fit


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


def training_parser(
    doc: str, epochs: int | None, batch_size: int, seed_help: str, data_seed_help: str
) -> argparse.ArgumentParser:
    """A training script's parser (its docstring as the description) with the options every one
    has: ``--out``, ``--epochs`` (default ``epochs``), ``--threads`` (read by
    :func:`start_training`) and :func:`add_fit_options`'s."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=None, help="checkpoint path without suffix")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument(
        "--threads", type=int, default=None, help="torch's CPU threads (default: its own)"
    )
    add_fit_options(p, batch_size, seed_help, data_seed_help)
    return p


def add_fit_options(
    p: argparse.ArgumentParser, batch_size: int, seed_help: str, data_seed_help: str
) -> None:
    """``--batch-size`` (default ``batch_size``), ``--lr`` (3e-3), ``--width`` (16), ``--seed``
    (0; ``seed_help`` says what it seeds) and ``--data-seed`` (0; ``data_seed_help``), in that
    order: what :func:`fit_parsed` and the datasets read."""
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--data-seed", type=int, default=0, help=data_seed_help)


def fit_parsed(
    args: argparse.Namespace,
    generator: torch.Generator,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ds: Any,
    **options: Any,
) -> None:
    """:func:`bench.engine.training.fit` of ``model`` on ``(x, y)`` of ``ds`` with the parsed
    ``--epochs``, ``--batch-size`` and ``--lr`` and ``generator`` (of :func:`start_training`);
    ``options`` are ``fit``'s others (``augment``, ``after_epoch``, ``loss_fn``)."""
    fit(model, x, y, ds, args.epochs, args.batch_size, args.lr, generator, **options)


def accuracies(model: torch.nn.Module, **splits: tuple) -> dict[str, float]:
    """``<split>_accuracy`` (4 decimals) of ``model`` on each split ``(x, y, dataset)``, in the
    order given."""
    return {f"{k}_accuracy": round(accuracy(model, *xy_ds), 4) for k, xy_ds in splits.items()}
