"""Tiny models for the method tests: the embedded CNN, a ResNet-18 and a ViT, all random weights."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from torch import nn

from bench import ROOT
from bench.config.overrides import options
from bench.config.schema import register
from bench.models import ModelMeta, ShapesCNN

register()

CONF = ROOT / "conf"
METHODS = options("method")

#: name -> (builder, input side, cam_layer)
MODELS = {
    "shapes_cnn": (lambda: ShapesCNN(num_classes=8, width=8), 32, "features.3"),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None, num_classes=10), 48, "layer4"),
    "vit": (
        lambda: torchvision.models.VisionTransformer(
            image_size=32,
            patch_size=8,
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            mlp_dim=64,
            num_classes=5,
        ),
        32,
        "encoder.layers.encoder_layer_1.ln_1",
    ),
}

#: The knobs that make a method cheap enough for a unit test (applied where the method has them).
FAST = {
    "n_samples": 6,
    "n_masks": 48,
    "n_steps": 8,
    "n_segments": 12,
    "batch_size": 64,
    "internal_batch_size": 64,
    "window": 16,
    "stride": 16,
}


def make_model(name: str) -> nn.Module:
    """A model with random (but fixed) weights, in eval mode, with its ``bench_meta``."""
    build, side, layer = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    if isinstance(model, torchvision.models.VisionTransformer):  # torchvision zero-inits the head
        nn.init.normal_(model.heads.head.weight, std=0.5)
    num_classes = model(torch.zeros(1, 3, side, side)).shape[1]
    model.bench_meta = ModelMeta(
        name=name,
        weights="random",
        cam_layer=layer,
        input_size=(side, side),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        num_classes=num_classes,
    )
    return model


def make_images(name: str, n: int = 3, seed: int = 1, side: int | None = None) -> torch.Tensor:
    """Smooth random images ``[n, 3, side, side]`` (blobs, so superpixels are not degenerate)."""
    side = side or MODELS[name][1]
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 6, 6, generator=gen)
    fine = torch.nn.functional.interpolate(
        coarse, size=(side, side), mode="bicubic", align_corners=False
    )
    return fine + 0.1 * torch.randn(n, 3, side, side, generator=gen)


def method_config(method: str, model: str, fast: bool = True, overrides: list[str] | None = None):
    """The ``method`` node composed by Hydra from ``conf/`` for ``model``'s CAM layer (a fresh copy
    of a node composed once per process: Hydra's composition is most of a cheap method's test)."""
    return copy.deepcopy(_method_node(method, model, fast, tuple(overrides or ())))


@cache
def _method_node(method: str, model: str, fast: bool, overrides: tuple[str, ...]):
    layer = MODELS[model][2] if model in MODELS else None
    with initialize_config_dir(config_dir=str(Path(CONF).resolve()), version_base=None):
        cfg = compose(
            config_name="config",
            overrides=[f"method={method}", f"model.cam_layer={layer}", *overrides],
        )
    OmegaConf.resolve(cfg)
    node = cfg.method
    if fast:
        with open_dict(node):
            for key, value in FAST.items():
                if key in node:
                    node[key] = value
    return node


def make_method(method: str, model: str, fast: bool = True, overrides: list[str] | None = None):
    return instantiate(method_config(method, model, fast, overrides))


@pytest.fixture(scope="session")
def models() -> dict[str, nn.Module]:
    return {name: make_model(name) for name in MODELS}
