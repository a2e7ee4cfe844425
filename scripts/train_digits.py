"""Train the digits benchmark's CNN on real handwriting on cluttered canvases; write its checkpoint.

    python scripts/train_digits.py --threads 1          # the committed model

Trains ``bench.models.ShapesCNN(num_classes=10)`` on the train split of
:class:`bench.data.digits.DigitsDataset` (1,197 digits x 3 canvases), picks nothing on the test
split, and writes ``<out>.pt`` (state dict plus the training record) and ``<out>.json`` (the record
alone: command, seeds, epochs, val and test accuracy, versions). Test digits are never seen in
training (the split is a fixed permutation of the 1,797 digits).
"""

from __future__ import annotations

import logging
import sys
import time

from bench.data.digits import DigitsDataset
from bench.engine import training_script as script
from bench.engine.training import accuracy, render_split, save_checkpoint
from bench.models import ShapesCNN

log = logging.getLogger("train_digits")


def main(argv: list[str] | None = None) -> int:
    seeds = ("training seed (init, order)", "rendering seed of the dataset")
    p = script.training_parser(__doc__, 15, 32, *seeds)
    p.add_argument("--renders", type=int, default=3, help="canvases per training digit")
    args = p.parse_args(argv)
    out, gen = script.start_training(args, "digits_cnn")

    train = DigitsDataset("train", renders=args.renders, seed=args.data_seed)
    val = DigitsDataset("val", seed=args.data_seed)
    test = DigitsDataset("test", seed=args.data_seed)
    start = time.time()
    xtr, ytr = render_split(train)
    xva, yva = render_split(val)
    xte, yte = render_split(test)
    model = ShapesCNN(num_classes=train.num_classes, width=args.width)

    def val_accuracy(_: int) -> str:
        return f"val {accuracy(model, xva, yva, val):.4f}"

    # no flips: a mirrored digit is another glyph
    script.fit_parsed(args, gen, model, xtr, ytr, train, after_epoch=val_accuracy)

    record = {
        "command": script.command_line("train_digits.py", argv),
        "model": "ShapesCNN",
        "num_classes": train.num_classes,
        "width": args.width,
        "epochs": args.epochs,
        "renders": args.renders,
        "train_size": len(xtr),
        "seed": args.seed,
        "data_seed": args.data_seed,
        **script.accuracies(
            model, train=(xtr, ytr, train), val=(xva, yva, val), test=(xte, yte, test)
        ),
        "test_size": len(xte),
    }
    save_checkpoint(model, record, out, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
