"""The models, images, maps and configs the sections measure, composed as ``bench`` composes a job."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from bench.api import compose
from bench.core.batch import Batch, collate
from bench.data.subset import SUBSET_KEYS

from .settings import TORCHVISION


@dataclass
class Setup:
    """One model with its images, maps (by the maps method) and its composed config."""

    name: str
    cfg: DictConfig
    model: torch.nn.Module
    batch: Batch
    maps: torch.Tensor
    method: Any
    large: bool


_COMPOSED: dict[tuple, DictConfig] = {}


def configure(name: str, metrics: list[str], method: str, *extra: str) -> DictConfig:
    """The job config of ``bench model=<name> method=<method> metric=[...]`` (a fresh copy;
    composed once per argument set)."""
    key = (name, tuple(metrics), method, extra)
    if key not in _COMPOSED:
        overrides = [f"model={name}", f"method={method}", f"metric=[{','.join(metrics)}]"]
        if name in TORCHVISION:
            overrides.append("model.weights=null")
        _COMPOSED[key] = compose(*overrides, *extra)
    return copy.deepcopy(_COMPOSED[key])


def load_images(cfg: DictConfig, n: int, device: torch.device, size: int | None = None) -> Batch:
    node = {k: v for k, v in cfg.dataset.items() if k not in SUBSET_KEYS}
    if size is not None:
        node["image_size"] = size
    data = instantiate(node)
    return collate([data[i] for i in range(n)]).to(device)


def make_setup(
    name: str, metrics: list[str], maps_method: str, n: int, device: torch.device
) -> Setup:
    cfg = configure(name, metrics or ["pointing_game"], maps_method)
    model = instantiate(cfg.model).eval().to(device)
    batch = load_images(cfg, n, device)
    method = instantiate(cfg.method)
    maps = method(model, batch.images, batch.targets)
    return Setup(name, cfg, model, batch, maps, method, name in TORCHVISION)


def shrink_metric(node: DictConfig, name: str, hw: int, knobs: dict) -> None:
    """The ``--quick`` settings of one metric config (in place): fewer steps / perturbations."""
    steps, perturb = knobs["steps"], knobs["perturb"]
    with open_dict(node):
        if steps and name in ("deletion", "insertion"):
            node.step = math.ceil(hw / steps)
        if steps and name.startswith("pixel_flipping"):
            node.step = hw // steps if hw % steps == 0 else math.ceil(hw / steps)
        if steps and name in ("dauc", "iauc", "dc", "ic"):
            node.max_steps = steps
        if perturb and name in ("infidelity", "max_sensitivity"):
            node.n_perturb_samples = perturb


def shrink_method(node: DictConfig, name: str, h: int, knobs: dict) -> None:
    """The ``--quick`` settings of one method config (in place): fewer samples / windows."""
    samples = knobs["samples"]
    if not samples:
        return
    with open_dict(node):
        if name == "occlusion":  # about `samples` windows
            side = max(1, round(h / math.sqrt(samples)))
            node.window = node.stride = side
        if name == "rise":
            node.n_masks = samples
        if name == "feature_ablation":
            node.n_segments = min(int(node.n_segments), samples)
        elif "n_segments" in node:  # a surrogate needs more samples than players
            node.n_segments = min(int(node.n_segments), max(2, samples // 4))
        if "n_samples" in node:
            node.n_samples = samples


def method_config(setup: Setup, name: str, knobs: dict, quick: bool) -> DictConfig:
    """The ``method=<name>`` node for ``setup``'s model, shrunk in quick mode."""
    node = configure(setup.name, [], name).method
    if quick:
        shrink_method(node, name, setup.batch.images.shape[-2], knobs)
    return node


def metric_config(setup: Setup, name: str, maps_method: str, knobs: dict, quick: bool):
    """The ``metric=[<name>]`` node for ``setup``'s model, shrunk in quick mode."""
    node = configure(setup.name, [name], maps_method).metric[name]
    if quick:
        h, w = setup.batch.images.shape[-2:]
        shrink_metric(node, name, h * w, knobs)
    return node


def settings_note(node: DictConfig) -> str:
    keys = ("window", "stride", "n_masks", "n_segments", "n_samples")
    return ", ".join(f"{k} {node[k]}" for k in keys if k in node)
