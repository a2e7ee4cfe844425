"""Train the scenes benchmark's multi-label CNN and write its checkpoint and its per-class accuracy.

    python scripts/train_scenes.py --threads 2     # the committed model

The architecture is the shapes benchmark's ShapesCNN (8 outputs), initialised from the committed
shapes CNN (``--init``: it already knows the eight shapes, so a few CPU minutes suffice) and
fine-tuned with a sigmoid per class (binary cross-entropy on the multi-hot labels of each image),
horizontal flips as the only augmentation. It is scored on a held-out generator seed (``--eval-seed``, never seen in
training): per class, the accuracy of "present" = logit > 0 and the average precision; over
images, the exact-match accuracy; over (image, class present) pairs, the recall.

Writes ``<out>.pt`` (state dict plus the training record), ``<out>.json`` (the record alone:
command, seeds, epochs, held-out metrics, versions) and ``<out>.md`` (the per-class table).
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench import ROOT
from bench.core.checkpoints import read_checkpoint, split_checkpoint
from bench.data.scenes import CLASSES, ScenesDataset
from bench.engine import training_script as script
from bench.engine.training import normalise, save_checkpoint
from bench.models import ShapesCNN

log = logging.getLogger("train_scenes")


def render_images(ds: ScenesDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8 ``[N, 3, H, W]``) and multi-hot labels (float ``[N, C]``) of ``ds``."""
    n = ds.size
    imgs = np.empty((n, 3, ds.image_size, ds.image_size), dtype=np.uint8)
    labels = np.zeros((n, ds.num_classes), dtype=np.float32)
    for i in tqdm(range(n), desc=f"render {ds.split} seed {ds.seed}", leave=False):
        img, classes, _ = ds.scene(i)
        imgs[i] = img.transpose(2, 0, 1)
        labels[i, classes] = 1.0
    return torch.from_numpy(imgs), torch.from_numpy(labels)


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, ds: ScenesDataset) -> torch.Tensor:
    model.eval()
    return torch.cat([model(normalise(x[i : i + 500], ds)) for i in range(0, len(x), 500)])


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated average precision (the mean precision at each positive, ranked by score)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0.5
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def evaluate(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """Held-out metrics of multi-label ``logits`` ``[N, C]`` against multi-hot ``y`` ``[N, C]``."""
    pred = (logits > 0).float()
    s, t = logits.numpy(), y.numpy()
    per_class = {
        name: {
            "accuracy": round(float((pred[:, c] == y[:, c]).float().mean()), 4),
            "recall": round(float(pred[y[:, c] > 0.5, c].mean()), 4),
            "ap": round(average_precision(s[:, c], t[:, c]), 4),
            "present": int(y[:, c].sum()),
        }
        for c, name in enumerate(CLASSES)
    }
    return {
        "mean_class_accuracy": round(
            float(np.mean([v["accuracy"] for v in per_class.values()])), 4
        ),
        "mean_ap": round(float(np.mean([v["ap"] for v in per_class.values()])), 4),
        "exact_match": round(float((pred == y).all(1).float().mean()), 4),
        "pair_recall": round(float(pred[y > 0.5].mean()), 4),
        "per_class": per_class,
    }


def flips(gen: torch.Generator):
    """Random horizontal flips drawn from ``gen`` (a mirrored shape keeps its class)."""

    def augment(xb: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(len(xb), 1, 1, 1, generator=gen) < 0.5
        return torch.where(flip, xb.flip(3), xb)

    return augment


def markdown(record: dict) -> str:
    ev = record["held_out"]
    lines = [
        "# scenes_cnn: held-out accuracy",
        "",
        f"`{record['command']}` ({record['train_seconds']} s on {record['threads']} CPU threads). "
        f"Held out: {record['eval_size']} `{record['eval_split']}` images of generator seed "
        f"{record['eval_seed']} (training used seed {record['data_seed']}). A class is predicted "
        "present when its logit is > 0.",
        "",
        f"Mean per-class accuracy {ev['mean_class_accuracy']:.4f}, mean AP {ev['mean_ap']:.4f}, "
        f"exact match (all 8 labels right) {ev['exact_match']:.4f}, pair recall (present classes "
        f"predicted present) {ev['pair_recall']:.4f}; train mean per-class accuracy "
        f"{record['train_mean_class_accuracy']:.4f}.",
        "",
        "| class | present | accuracy | recall | AP |",
        "|---|---|---|---|---|",
    ]
    for name, v in ev["per_class"].items():
        lines.append(
            f"| {name} | {v['present']} | {v['accuracy']:.4f} | {v['recall']:.4f} | {v['ap']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    seeds = ("training seed (init, order, flips)", "generator seed of the training set")
    p = script.training_parser(__doc__, 3, 64, *seeds)
    p.add_argument("--train-size", type=int, default=6000, help="training images")
    p.add_argument("--eval-size", type=int, default=1000, help="held-out images")
    p.add_argument("--eval-seed", type=int, default=1, help="generator seed of the held-out set")
    p.add_argument(
        "--init",
        default="results/reference/models/shapes_cnn.pt",
        help="start from this checkpoint's features (the shapes CNN knows the 8 shapes); '' = random",
    )
    args = p.parse_args(argv)
    out, gen = script.start_training(args, "scenes_cnn")

    train = ScenesDataset("train", size=args.train_size, seed=args.data_seed)
    held = ScenesDataset("test", size=args.eval_size, seed=args.eval_seed)
    start = time.time()
    xtr, ytr = render_images(train)
    xev, yev = render_images(held)
    model = ShapesCNN(num_classes=train.num_classes, width=args.width)
    if args.init:  # the committed shapes CNN's weights, head included (same 8 classes)
        state = read_checkpoint(ROOT / args.init, "--init")
        model.load_state_dict(split_checkpoint(state, args.init, "--init")[0])
    # AdamW + one-cycle schedule on binary cross-entropy, random horizontal flips
    script.fit_parsed(args, gen, model, xtr, ytr, train, augment=flips(gen),
               loss_fn=F.binary_cross_entropy_with_logits)  # fmt: skip

    n_fit = min(len(xtr), 2000)
    record = {
        "command": script.command_line("train_scenes.py", argv),
        "model": "ShapesCNN",
        "objective": "multi-label (sigmoid per class, binary cross-entropy)",
        "width": args.width,
        "epochs": args.epochs,
        "train_size": args.train_size,
        "init": args.init or "random",
        "seed": args.seed,
        "data_seed": args.data_seed,
        "eval_seed": args.eval_seed,
        "eval_split": "test",
        "eval_size": args.eval_size,
        "train_mean_class_accuracy": evaluate(logits_of(model, xtr[:n_fit], train), ytr[:n_fit])[
            "mean_class_accuracy"
        ],
        "held_out": evaluate(logits_of(model, xev, held), yev),
    }
    # the checkpoint's record keeps scalars only; the per-class table lives in the .json / .md
    record = save_checkpoint(model, record, out, start)
    out.with_suffix(".md").write_text(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
