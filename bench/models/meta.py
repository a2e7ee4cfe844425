"""What every loader attaches to its model: :class:`ModelMeta`, checked once, the same way for all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from bench.core.context import PROBABILITIES
from bench.core.errors import ConfigError, check_choice
from bench.core.layers import FeatureLayout, get_layer, last_feature_map_layer


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
        layout: how its layers lay out features (channels first or last, the tokens before the
            patch grid of a transformer), stated by loaders that know it (timm, Hugging Face);
            None: feature maps ``[B, C, h, w]``, and a token layer is read by ``vit_gradcam``
            alone (a class token, then a square grid).
        probabilities: what turns its logits into class probabilities: ``softmax`` (one label
            per image) or ``sigmoid`` (a multi-label head), as its config declares; the metrics
            and methods that read probabilities use it.
    """

    name: str
    weights: str
    cam_layer: str | None
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    extra: dict = field(default_factory=dict)
    layout: FeatureLayout | None = None
    probabilities: str = "softmax"

    def to_dict(self) -> dict:
        return asdict(self)


def meta_of(model: nn.Module) -> ModelMeta:
    """The metadata attached by a loader; a ConfigError for a bare module."""
    meta = getattr(model, "bench_meta", None)
    if meta is None:
        raise ConfigError(
            f"model {type(model).__name__} carries no bench_meta; load it through a bench.models loader."
        )
    return meta


def image_size(
    value: Sequence[int] | int | None, key: str = "model.input_size"
) -> tuple[int, int] | None:
    """``(H, W)`` from one side or ``[H, W]`` (None stays None), or a ConfigError naming ``key``."""
    if value is None:
        return None
    vals = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        sides = [int(v) for v in vals]
        ok = len(sides) in (1, 2) and all(s >= 1 and s == v for s, v in zip(sides, vals))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{key}={value} is not valid; accepted: [H, W] (or one side) in pixels, integers >= 1."
        )
    return (sides[0], sides[0]) if len(sides) == 1 else (sides[0], sides[1])


def count_classes(
    model: nn.Module, input_size: tuple[int, int], expected: int | None = None, what: str = ""
) -> int:
    """Number of logits of ``model`` from one forward pass of a zero image (eval mode, no grad).

    A ConfigError when the output is not ``[1, C]`` logits or ``C != expected`` (when given).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *input_size))
    finally:
        model.train(was_training)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ConfigError(
            f"the model returns {getattr(out, 'shape', type(out).__name__)} for a [1, 3, {input_size[0]}, "
            f"{input_size[1]}] input; a classifier must return logits [B, num_classes]."
        )
    counted = int(out.shape[1])
    if expected is not None and counted != expected:
        raise ConfigError(
            f"model.num_classes={expected} but {what or type(model).__name__} returns {counted} "
            f"logits; set model.num_classes={counted} or load a matching checkpoint."
        )
    return counted


def auto_cam_layer(model: nn.Module, input_size: tuple[int, int]) -> str:
    """``cam_layer: auto``: the last module whose output is a spatial map ``[B, K, h, w]`` with
    ``h * w > 1`` (:func:`bench.core.layers.last_feature_map_layer`; ``layer4`` for ResNets)."""
    count_classes(model, input_size)  # a model that does not return logits fails here first
    layer = last_feature_map_layer(model, input_size)
    if layer is None:
        raise ConfigError(
            f"model {type(model).__name__} has no layer with a [B, K, h, w] output; set model.cam_layer "
            "to a module name (or null: CAM methods will then be refused)."
        )
    return layer


def _normalisation(key: str, values: Sequence[float], positive: bool) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or (positive and not all(v > 0 for v in out)):
        rule = (
            "three numbers > 0 (one per RGB channel)"
            if positive
            else "three numbers (one per RGB channel)"
        )
        raise ConfigError(
            f"{key}={list(values) if isinstance(values, Sequence) else values} is not valid; accepted: {rule}."
        )
    return out


def attach_meta(
    model: nn.Module,
    name: str,
    weights: str,
    cam_layer: str | None,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    extra: dict,
    *,
    layout: FeatureLayout | None = None,
    probabilities: str = "softmax",
) -> nn.Module:
    """Put the model in eval mode and attach its :class:`ModelMeta` (CAM layer and normalisation checked).

    ``cam_layer``: a name from ``model.named_modules()``, ``auto`` (:func:`auto_cam_layer`) or None.
    ``probabilities``: ``softmax`` or ``sigmoid`` (``model.probabilities``).
    """
    model.eval()
    if cam_layer == "auto":
        cam_layer = auto_cam_layer(model, input_size)
    elif cam_layer is not None:
        get_layer(model, cam_layer, key="model.cam_layer", also=("auto", "null"))
    model.bench_meta = ModelMeta(
        name=name,
        weights=weights,
        cam_layer=cam_layer,
        input_size=tuple(input_size),
        mean=_normalisation("model.mean", mean, positive=False),
        std=_normalisation("model.std", std, positive=True),
        num_classes=num_classes,
        extra=extra,
        layout=layout,
        probabilities=check_choice("model.probabilities", probabilities, PROBABILITIES),
    )
    return model
