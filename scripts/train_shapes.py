"""Train the embedded benchmark's CNN on the synthetic shapes dataset and write its checkpoint.

    python scripts/train_shapes.py                     # the committed model
    python scripts/train_shapes.py --shuffle-labels    # the data-randomisation model (permuted labels)

Writes ``<out>.pt`` (state dict plus the training record) and ``<out>.json`` (the record alone:
command, seed, epochs, test accuracy, versions).
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
from bench.data.shapes import ShapesDataset
from bench.models import ShapesCNN

log = logging.getLogger("train_shapes")


def tensors(ds: ShapesDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8 ``[N, 3, H, W]``) and labels of a split."""
    imgs = np.empty((len(ds), 3, ds.image_size, ds.image_size), dtype=np.uint8)
    labels = np.empty(len(ds), dtype=np.int64)
    for i in tqdm(range(len(ds)), desc=f"render {ds.split}", leave=False):
        img, label, _ = ds.raw(i)
        imgs[i] = img.transpose(2, 0, 1)
        labels[i] = label
    return torch.from_numpy(imgs), torch.from_numpy(labels)


def normalise(x: torch.Tensor, ds: ShapesDataset) -> torch.Tensor:
    return (x.float() / 255 - ds.mean) / ds.std


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ds: ShapesDataset) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 500):
        correct += (model(normalise(x[i : i + 500], ds)).argmax(1) == y[i : i + 500]).sum().item()
    return correct / len(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="checkpoint path without suffix")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--train-size", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="training seed (init, order, label permutation)")
    p.add_argument("--data-seed", type=int, default=0, help="dataset generator seed")
    p.add_argument("--shuffle-labels", action="store_true", help="train on permuted labels (Adebayo et al.)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = args.epochs or (30 if args.shuffle_labels else 8)
    default_name = "shapes_cnn_shuffled" if args.shuffle_labels else "shapes_cnn"
    out = Path(args.out) if args.out else ROOT / "results" / "reference" / "models" / default_name
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    train = ShapesDataset("train", size=args.train_size, seed=args.data_seed)
    test = ShapesDataset("test", seed=args.data_seed)
    start = time.time()
    xtr, ytr = tensors(train)
    xte, yte = tensors(test)
    if args.shuffle_labels:  # a permutation keeps the class frequencies
        ytr = ytr[torch.randperm(len(ytr), generator=gen)]
    model = ShapesCNN(num_classes=train.num_classes, width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = epochs * ((len(xtr) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total, n = 0.0, 0
        for i in tqdm(range(0, len(xtr), args.batch_size), desc=f"epoch {epoch + 1}/{epochs}", leave=False):
            idx = order[i : i + args.batch_size]
            xb = normalise(xtr[idx], train)
            if not args.shuffle_labels:  # flips keep every class's shape class
                xb = torch.where(torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5, xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        log.info("epoch %d/%d loss %.4f", epoch + 1, epochs, total / n)

    record = {
        "command": "python scripts/train_shapes.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": "ShapesCNN",
        "width": args.width,
        "epochs": epochs,
        "train_size": args.train_size,
        "seed": args.seed,
        "data_seed": args.data_seed,
        "shuffle_labels": args.shuffle_labels,
        "train_accuracy": round(accuracy(model, xtr, ytr, train), 4),
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
