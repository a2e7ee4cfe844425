"""Train the digits benchmark's CNN on real handwriting on cluttered canvases; write its checkpoint.

    python scripts/train_digits.py --threads 1          # the committed model

Trains ``bench.models.ShapesCNN(num_classes=10)`` on the train split of
:class:`bench.data.digits.DigitsDataset` (1,197 digits x 3 canvases), picks nothing on the test
split, and writes ``<out>.pt`` (state dict plus the training record) and ``<out>.json`` (the record
alone: command, seeds, epochs, val and test accuracy, versions). Test digits are never seen in
training (the split is a fixed permutation of the 1,797 digits).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bench import ROOT
from bench.data.digits import DigitsDataset
from bench.models import ShapesCNN

log = logging.getLogger("train_digits")


def tensors(ds: DigitsDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8 ``[N, 3, H, W]``) and labels of a split."""
    imgs = np.empty((len(ds), 3, ds.image_size, ds.image_size), dtype=np.uint8)
    labels = np.empty(len(ds), dtype=np.int64)
    for i in tqdm(range(len(ds)), desc=f"render {ds.split}", leave=False):
        img, label, _ = ds.raw(i)
        imgs[i] = img.transpose(2, 0, 1)
        labels[i] = label
    return torch.from_numpy(imgs), torch.from_numpy(labels)


def normalise(x: torch.Tensor, ds: DigitsDataset) -> torch.Tensor:
    return (x.float() / 255 - ds.mean) / ds.std


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ds: DigitsDataset) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 500):
        correct += (model(normalise(x[i : i + 500], ds)).argmax(1) == y[i : i + 500]).sum().item()
    return correct / len(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="checkpoint path without suffix")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--renders", type=int, default=3, help="canvases per training digit")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="training seed (init, order)")
    p.add_argument("--data-seed", type=int, default=0, help="rendering seed of the dataset")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else ROOT / "results" / "reference" / "models" / "digits_cnn"
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    train = DigitsDataset("train", renders=args.renders, seed=args.data_seed)
    val = DigitsDataset("val", seed=args.data_seed)
    test = DigitsDataset("test", seed=args.data_seed)
    start = time.time()
    xtr, ytr = tensors(train)
    xva, yva = tensors(val)
    xte, yte = tensors(test)
    model = ShapesCNN(num_classes=train.num_classes, width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(xtr) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total, n = 0.0, 0
        for i in tqdm(range(0, len(xtr), args.batch_size), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False):
            idx = order[i : i + args.batch_size]  # no flips: a mirrored digit is another glyph
            loss = F.cross_entropy(model(normalise(xtr[idx], train)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        log.info("epoch %d/%d loss %.4f val %.4f", epoch + 1, args.epochs, total / n,
                 accuracy(model, xva, yva, val))

    record = {
        "command": "python scripts/train_digits.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": "ShapesCNN",
        "num_classes": train.num_classes,
        "width": args.width,
        "epochs": args.epochs,
        "renders": args.renders,
        "train_size": len(xtr),
        "seed": args.seed,
        "data_seed": args.data_seed,
        "train_accuracy": round(accuracy(model, xtr, ytr, train), 4),
        "val_accuracy": round(accuracy(model, xva, yva, val), 4),
        "test_accuracy": round(accuracy(model, xte, yte, test), 4),
        "test_size": len(xte),
        "train_seconds": round(time.time() - start, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.save({"state_dict": model.state_dict(), **record}, out.with_suffix(".pt"))
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    log.info(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
