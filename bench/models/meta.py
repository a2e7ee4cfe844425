"""What every loader attaches to its model: :class:`ModelMeta`, checked once, the same way for all."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from typing_extensions import TypedDict

from bench.core.checkpoints import load_weights
from bench.core.context import PROBABILITIES
from bench.core.errors import ConfigError, check_bool, check_choice, check_int
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


class HeadKeys(TypedDict, total=False):
    """The keys every model config shares about its head and its rows, stated here once: a
    loader takes them as ``**shared: Unpack[HeadKeys]`` (or a TypedDict extending it), and
    :func:`model_keys` gives them with the loader's defaults (:data:`DEFAULTS` otherwise).

    Keys:
        num_classes: logits of the head, checked by one forward pass; null = the model's own.
        cam_layer: a module name (``model.named_modules()``) for CAM methods, ``auto`` (the
            loader's choice: the last spatial map, a ViT's last block) or null (CAM refused).
        name: the ``model`` column of result rows; null = the loader's (the architecture).
        probabilities: ``softmax`` (one label per image) or ``sigmoid`` (a multi-label head).
    """

    num_classes: int | None
    cam_layer: str | None
    name: str | None
    probabilities: str | None


class ModelKeys(HeadKeys, total=False):
    """:class:`HeadKeys` and the preprocessing the model states where they are null (its
    weights' transforms, its ``pretrained_cfg``, its image processor).

    Keys:
        input_size: ``(H, W)`` (or one side) the model expects.
        resize_size: the shorter side before the centre crop (the ImageNet protocol).
        mean: the normalisation mean, one per RGB channel.
        std: the normalisation std, likewise.
    """

    input_size: Sequence[int] | None
    resize_size: int | None
    mean: Sequence[float] | None
    std: Sequence[float] | None


class CheckpointKeys(TypedDict, total=False):
    """The keys of a model config whose weights may come from a local checkpoint file, stated
    here once (:meth:`LoaderKeys.load_checkpoint` reads them).

    Keys:
        checkpoint: a local file: a state dict, a dict holding one, or (with
            ``trust_checkpoint``) a pickled model; null = no checkpoint.
        strip_prefix: removed from the checkpoint's keys (``module.`` for DataParallel saves).
        trust_checkpoint: allow a checkpoint that is a pickled model (unpickling runs code).
    """

    checkpoint: str | None
    strip_prefix: str | None
    trust_checkpoint: bool


class CheckpointModelKeys(ModelKeys, CheckpointKeys, total=False):
    """:class:`ModelKeys` and :class:`CheckpointKeys` (torchvision and timm models)."""


#: The defaults of the shared keys; a loader states its own where they differ.
DEFAULTS: dict[str, Any] = {
    "num_classes": None,
    "cam_layer": "auto",
    "name": None,
    "probabilities": "softmax",
    "input_size": None,
    "resize_size": None,
    "mean": None,
    "std": None,
    "checkpoint": None,
    "strip_prefix": None,
    "trust_checkpoint": False,
}


class LoaderKeys(dict):
    """The shared keys of one loader call by name (:func:`model_keys`), with what every loader
    does with them; the loader replaces each by what it resolved before :meth:`attach`."""

    def checked_classes(self) -> int | None:
        """``num_classes`` as given: an integer >= 1, or None."""
        given = self["num_classes"]
        return None if given is None else check_int("model.num_classes", given, minimum=1)

    def resize_size(self, own: int | None) -> int | None:
        """``resize_size`` where given (an integer >= 1), else the model's own ``own``."""
        given = self["resize_size"]
        return own if given is None else check_int("model.resize_size", given, minimum=1)

    def load_checkpoint(self, build: Callable[[], nn.Module], what: str) -> tuple[nn.Module, dict]:
        """The model of the file ``checkpoint`` (:class:`CheckpointKeys`: a state dict loaded
        into ``build()``, described as ``what`` in errors) and the checkpoint's record
        (:func:`bench.core.checkpoints.load_weights`)."""
        trust = check_bool("model.trust_checkpoint", self["trust_checkpoint"])
        return load_weights(self["checkpoint"], build, what, self["strip_prefix"], trust=trust)

    def attach(
        self, model: nn.Module, weights: str, extra: dict, layout: FeatureLayout | None = None
    ) -> nn.Module:
        """:func:`attach_meta` with the keys as the loader resolved them: ``name``,
        ``cam_layer``, ``input_size``, ``mean``, ``std``, ``num_classes`` (the logits counted)
        and ``probabilities``."""
        return attach_meta(
            model, self["name"], weights, self["cam_layer"], self["input_size"], self["mean"],
            self["std"], self["num_classes"], extra, layout=layout,
            probabilities=self["probabilities"],
        )  # fmt: skip


def model_keys(
    loader: Callable, shared: Mapping[str, Any], declared: type = ModelKeys, **defaults: Any
) -> LoaderKeys:
    """The ``**shared`` keys of ``loader`` (the TypedDict ``declared``) over its ``defaults``
    over :data:`DEFAULTS`; a key ``declared`` lacks is a TypeError, as for any function."""
    accepted = declared.__required_keys__ | declared.__optional_keys__
    for key in shared:
        if key not in accepted:
            raise TypeError(f"{loader.__name__}() got an unexpected keyword argument {key!r}")
    return LoaderKeys({**{k: DEFAULTS[k] for k in accepted}, **defaults, **shared})


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
