"""The embedded benchmarks' CNN (shapes and digits) and its loader from the committed checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bench.core.checkpoints import load_weights
from bench.core.errors import check_int
from bench.models.meta import attach_meta, image_size


class ShapesCNN(nn.Module):
    """The embedded benchmark's classifier: a strided stem, three conv blocks, global average pooling, a linear head.

    ``features.3`` (the last conv block, a 14x14 grid at 112 px input) is its CAM layer; the
    pooling + linear head makes it CAM-compatible.
    """

    def __init__(self, num_classes: int = 8, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int, pool: bool, k: int = 3, stride: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
            layers = [conv, nn.BatchNorm2d(cout), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return nn.Sequential(*layers)

        w = width
        self.features = nn.Sequential(
            block(3, w, False, k=5, stride=2),
            block(w, 2 * w, True),
            block(2 * w, 4 * w, True),
            block(4 * w, 4 * w, False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def load_shapes_cnn(
    checkpoint: str,
    name: str = "shapes_cnn",
    num_classes: int = 8,
    width: int = 16,
    cam_layer: str | None = "features.3",
    input_size: Sequence[int] = (112, 112),
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.25, 0.25, 0.25),
    probabilities: str = "softmax",
) -> nn.Module:
    """The embedded benchmark's trained CNN from its committed checkpoint, in eval mode
    (``probabilities``: ``softmax``, or ``sigmoid`` for the scenes benchmark's multi-label head)."""
    num_classes = check_int("model.num_classes", num_classes, minimum=1)
    width = check_int("model.width", width, minimum=1)
    model, record = load_weights(
        checkpoint,
        lambda: ShapesCNN(num_classes=num_classes, width=width),
        f"ShapesCNN(num_classes={num_classes}, width={width})",
        hint="Train it with `make train` (python scripts/train_shapes.py).",
    )
    return attach_meta(
        model,
        name,
        Path(checkpoint).name,
        cam_layer,
        image_size(input_size),
        mean,
        std,
        num_classes,
        record,
        probabilities=probabilities,
    )
