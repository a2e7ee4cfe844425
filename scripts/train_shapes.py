"""Train the embedded benchmark's CNN on the synthetic shapes dataset and write its checkpoint.

    python scripts/train_shapes.py                     # the committed model
    python scripts/train_shapes.py --shuffle-labels    # the data-randomisation model (permuted labels)

Writes ``<out>.pt`` (state dict plus the training record) and ``<out>.json`` (the record alone:
command, seed, epochs, test accuracy, versions).
"""

from __future__ import annotations

import logging
import sys
import time

import torch

from bench.data.shapes import ShapesDataset
from bench.engine import training_script as script
from bench.engine.training import render_split, save_checkpoint
from bench.models import ShapesCNN

log = logging.getLogger("train_shapes")


def main(argv: list[str] | None = None) -> int:
    seeds = ("training seed (init, order, label permutation)", "dataset generator seed")
    p = script.training_parser(__doc__, None, 64, *seeds)
    p.add_argument("--train-size", type=int, default=12000)
    p.add_argument(
        "--shuffle-labels", action="store_true", help="train on permuted labels (Adebayo et al.)"
    )
    args = p.parse_args(argv)
    epochs = args.epochs = args.epochs or (30 if args.shuffle_labels else 8)
    default_name = "shapes_cnn_shuffled" if args.shuffle_labels else "shapes_cnn"
    out, gen = script.start_training(args, default_name)

    train = ShapesDataset("train", size=args.train_size, seed=args.data_seed)
    test = ShapesDataset("test", seed=args.data_seed)
    start = time.time()
    xtr, ytr = render_split(train)
    xte, yte = render_split(test)
    if args.shuffle_labels:  # a permutation keeps the class frequencies
        ytr = ytr[torch.randperm(len(ytr), generator=gen)]
    model = ShapesCNN(num_classes=train.num_classes, width=args.width)

    def flip(xb: torch.Tensor) -> torch.Tensor:  # a mirrored shape keeps its class
        return torch.where(torch.rand(len(xb), 1, 1, 1, generator=gen) < 0.5, xb.flip(3), xb)

    script.fit_parsed(
        args, gen, model, xtr, ytr, train, augment=None if args.shuffle_labels else flip
    )

    record = {
        "command": script.command_line("train_shapes.py", argv),
        "model": "ShapesCNN",
        "width": args.width,
        "epochs": epochs,
        "train_size": args.train_size,
        "seed": args.seed,
        "data_seed": args.data_seed,
        "shuffle_labels": args.shuffle_labels,
        **script.accuracies(model, train=(xtr, ytr, train), test=(xte, yte, test)),
        "test_size": len(xte),
    }
    save_checkpoint(model, record, out, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
