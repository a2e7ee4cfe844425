"""Models: the embedded benchmark's CNN and the loader that attaches each model's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from bench import ROOT
from bench.errors import ConfigError


@dataclass
class ModelMeta:
    """What the harness needs to know about a model (timm-style metadata carried by the model).

    Attributes:
        name: the config name (the ``model`` column of result rows).
        weights: where the weights came from (the ``weights`` column).
        cam_layer: the layer CAM-family methods use, by ``named_modules()`` name.
        input_size: ``(H, W)`` the model expects.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        num_classes: number of output logits.
        extra: anything else worth recording (checkpoint path, training record).
    """

    name: str
    weights: str
    cam_layer: str | None
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


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


def resolve_path(path: str | Path) -> Path:
    """A path as given if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def read_checkpoint(path: str | Path, hint: str = "") -> dict:
    """Load a checkpoint file (a dict with ``state_dict`` or a bare state dict) onto the CPU."""
    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(f"model.checkpoint={path} not found (looked at {p}).{(' ' + hint) if hint else ''}")
    obj = torch.load(p, map_location="cpu", weights_only=False)
    return obj


def load_shapes_cnn(
    checkpoint: str,
    name: str = "shapes_cnn",
    num_classes: int = 8,
    width: int = 16,
    cam_layer: str = "features.3",
    input_size: tuple[int, int] = (112, 112),
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> nn.Module:
    """The embedded benchmark's trained CNN from its committed checkpoint, in eval mode."""
    ckpt = read_checkpoint(checkpoint, hint="Train it with `make train` (python scripts/train_shapes.py).")
    state = ckpt.get("state_dict", ckpt)
    model = ShapesCNN(num_classes=num_classes, width=width)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"model.checkpoint={checkpoint} does not fit ShapesCNN(width={width}): {first}") from err
    model.eval()
    model.bench_meta = ModelMeta(
        name=name,
        weights=Path(checkpoint).name,
        cam_layer=cam_layer,
        input_size=tuple(input_size),
        mean=tuple(mean),
        std=tuple(std),
        num_classes=num_classes,
        extra={k: v for k, v in ckpt.items() if k != "state_dict"} if "state_dict" in ckpt else {},
    )
    return model


def meta_of(model: nn.Module) -> ModelMeta:
    """The metadata attached by a loader; a ConfigError for a bare module."""
    meta = getattr(model, "bench_meta", None)
    if meta is None:
        raise ConfigError(
            f"model {type(model).__name__} carries no bench_meta; load it through a bench.models loader."
        )
    return meta
