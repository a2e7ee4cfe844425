"""Training helpers for the embedded benchmarks' small CNNs (used by scripts/train_*.py).

The loop is deliberately plain (AdamW + one-cycle schedule, full-batch-free, seeded): what
matters is that the committed checkpoints are reproducible from the recorded command.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

log = logging.getLogger("bench.engine.training")


def render_split(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8 ``[N, 3, H, W]``) and labels of a dataset with a ``raw(i)`` renderer."""
    imgs = np.empty((len(ds), 3, ds.image_size, ds.image_size), dtype=np.uint8)
    labels = np.empty(len(ds), dtype=np.int64)
    for i in tqdm(range(len(ds)), desc=f"render {ds.split}", leave=False):
        img, label, _ = ds.raw(i)
        imgs[i] = img.transpose(2, 0, 1)
        labels[i] = label
    return torch.from_numpy(imgs), torch.from_numpy(labels)


def normalise(x: torch.Tensor, ds: Any) -> torch.Tensor:
    """uint8 images ``[N, 3, H, W]`` -> float, normalised with the dataset's mean and std."""
    return (x.float() / 255 - ds.mean) / ds.std


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ds: Any) -> float:
    """Top-1 accuracy of ``model`` on uint8 images ``x`` with labels ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), 500):
        correct += (model(normalise(x[i : i + 500], ds)).argmax(1) == y[i : i + 500]).sum().item()
    return correct / len(x)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ds: Any,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    after_epoch: Callable[[int], str] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> None:
    """Train ``model`` in place with AdamW and a one-cycle schedule; ``augment`` maps a batch,
    ``loss_fn(logits, targets)`` is the loss (cross-entropy; the scenes CNN's is binary)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total, n = 0.0, 0
        for i in tqdm(
            range(0, len(x), batch_size), desc=f"epoch {epoch + 1}/{epochs}", leave=False
        ):
            idx = order[i : i + batch_size]
            xb = normalise(x[idx], ds)
            if augment is not None:
                xb = augment(xb)
            loss = loss_fn(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        extra = f" {after_epoch(epoch)}" if after_epoch else ""
        log.info("epoch %d/%d loss %.4f%s", epoch + 1, epochs, total / n, extra)
    model.eval()


def save_checkpoint(
    model: nn.Module, record: dict[str, Any], out: Path, started: float
) -> dict[str, Any]:
    """Write ``<out>.pt`` (state dict + record) and ``<out>.json`` (the record, with versions)."""
    record = {
        **record,
        "train_seconds": round(time.time() - started, 1),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), **record}, out.with_suffix(".pt"))
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    log.info(json.dumps(record, indent=2))
    return record
