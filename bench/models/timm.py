"""timm models by name (optional: ``pip install timm``): random, pretrained or from a checkpoint, with
what the model says of itself: input size and normalisation (its ``pretrained_cfg`` and its
``img_size``), the CAM layer and the token layout (class and distillation tokens, channels-last
Swin stages), so no user writes reshape code."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from bench.core.checkpoints import weights_only_loads
from bench.core.errors import ConfigError, choice_error
from bench.core.layers import FeatureLayout, probe_outputs
from bench.models.meta import (
    CheckpointModelKeys,
    auto_cam_layer,
    count_classes,
    image_size,
    model_keys,
)

#: ``model.weights``: null (random initialisation, seeded) or ``pretrained`` (timm's own cache).
WEIGHTS = (None, "pretrained")
#: ``timm.create_model`` keywords that read weights or files, or that change what the model
#: returns: weights come through ``model.weights`` and ``model.checkpoint`` only.
RESERVED_KWARGS = (
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
    "cache_dir",
    "num_classes",
    "features_only",
)
#: timm's ImageNet normalisation, for an architecture without a ``pretrained_cfg``.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: The seed of a randomly initialised model (the same weights in every process).
INIT_SEED = 0


def import_timm():
    """The timm package, or a ConfigError saying how to install it."""
    try:
        import timm
    except ImportError as err:
        raise ConfigError(
            'model=timm needs the timm package: pip install timm (or pip install -e ".[timm]").'
        ) from err
    return timm


def _checked_arch(timm, arch: str) -> str:
    if not isinstance(arch, str) or not timm.is_model(arch):
        raise choice_error("model.arch", arch, timm.list_models(), "timm.list_models()")
    return arch


def timm_kwargs(kwargs: Mapping | None) -> dict:
    """``model.kwargs`` as a plain dict for ``timm.create_model`` (e.g. ``{img_size: 32, depth:
    2}``), refused when it names one of :data:`RESERVED_KWARGS`."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(
            f"model.kwargs={kwargs!r} is not valid; accepted: a mapping of timm.create_model "
            "keyword arguments, e.g. model.kwargs='{img_size: 32, depth: 2}'."
        )
    reserved = [k for k in kwargs if k in RESERVED_KWARGS]
    if reserved:
        raise ConfigError(
            f"model.kwargs.{reserved[0]} is not accepted (weights come from model.weights or "
            "model.checkpoint, the class count from model.num_classes); accepted: any other "
            "timm.create_model keyword argument."
        )
    return {str(k): (list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
            for k, v in kwargs.items()}  # fmt: skip


def timm_preprocessing(
    arch: str,
    kwargs: Mapping | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict:
    """What ``arch`` built with ``kwargs`` expects, without building it: ``input_size`` (given,
    else its ``img_size`` keyword, else its ``pretrained_cfg``), ``mean`` and ``std`` (given, else
    its ``pretrained_cfg``), ``resize_size`` (the input over timm's ``crop_pct``) and
    ``interpolation``."""
    timm = import_timm()
    cfg = timm.get_pretrained_cfg(_checked_arch(timm, arch))
    cfg = cfg.to_dict() if cfg is not None else {}
    kw = timm_kwargs(kwargs)
    size = (
        image_size(input_size)
        or image_size(kw.get("img_size"), "model.kwargs.img_size")
        or image_size(list(cfg.get("input_size") or (3, 224, 224))[1:])
    )
    crop = float(cfg.get("crop_pct") or 0.875)
    return {
        "input_size": list(size),
        "mean": list(mean if mean is not None else cfg.get("mean") or IMAGENET[0]),
        "std": list(std if std is not None else cfg.get("std") or IMAGENET[1]),
        "resize_size": int(math.floor(min(size) / crop)),
        "interpolation": cfg.get("interpolation"),
    }


def timm_layout(model: nn.Module) -> FeatureLayout:
    """The layout timm states for ``model``: channels-last maps where its ``output_fmt`` is NHWC
    (Swin), and its ``num_prefix_tokens`` (ViT: 1, DeiT distilled: 2) where it has tokens."""
    maps = "nhwc" if str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC" else "nchw"
    prefix = getattr(model, "num_prefix_tokens", None)
    return FeatureLayout(maps, int(prefix) if isinstance(prefix, int) else None)


def timm_cam_layer(model: nn.Module, layout: FeatureLayout, size: tuple[int, int]) -> str:
    """The CAM layer of a timm model: a ViT's last block's first norm (the tokens the last
    attention mixes: the class token reaches the patches through it), the last channels-last
    map (Swin), else the last feature map (``layer4``, ``stages.3``, ``bn2``)."""
    blocks = getattr(model, "blocks", None)
    if (
        layout.prefix_tokens is not None
        and isinstance(blocks, (nn.Sequential, nn.ModuleList))
        and len(blocks)
        and isinstance(getattr(blocks[-1], "norm1", None), nn.Module)
    ):
        return f"blocks.{len(blocks) - 1}.norm1"
    if layout.maps == "nhwc":
        maps = [
            n for n, out in probe_outputs(model, size) if isinstance(out, Tensor) and out.ndim == 4
        ]
        if maps:
            return maps[-1]
    return auto_cam_layer(model, size)


def _create(timm, arch: str, pretrained: bool, kwargs: dict) -> nn.Module:
    """``timm.create_model`` (random weights seeded by :data:`INIT_SEED`), errors in one line."""
    try:
        with weights_only_loads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise ConfigError(
            f"model.kwargs={kwargs}: timm {arch} does not take them ({err}); accepted: keyword "
            "arguments of its constructor (e.g. img_size, depth, embed_dim, num_heads)."
        ) from err
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"timm model {arch} (weights={'pretrained' if pretrained else 'null'}): "
            f"{type(err).__name__}: {err}. Provide the weights in the Hugging Face cache (HF_HOME) "
            "or as model.checkpoint=<file> model.weights=null."
        ) from err


def _check_weights(weights: str | None, checkpoint: str | None) -> None:
    """``model.weights`` is one of :data:`WEIGHTS`, and not set beside a checkpoint."""
    if weights not in WEIGHTS:
        raise ConfigError(
            f"model.weights={weights} is not valid; accepted: null (random initialisation, "
            "offline) or pretrained (timm's cache)."
        )
    if weights is not None and checkpoint:
        raise ConfigError(
            f"model.weights={weights} and model.checkpoint={checkpoint} are both set; accepted: "
            "one of them (set model.weights=null to load the checkpoint)."
        )


def _check_size(model: nn.Module, arch: str, size: tuple[int, int]) -> None:
    """A model built for one input size (a ViT's patch embedding) refuses another in one line."""
    embed = getattr(model, "patch_embed", None)
    fixed = getattr(embed, "img_size", None)
    if fixed is None or getattr(embed, "dynamic_img_size", False):
        return
    if not getattr(embed, "strict_img_size", True):
        return
    if tuple(fixed) != tuple(size):
        raise ConfigError(
            f"model.input_size={list(size)} but timm {arch} was built for {list(fixed)} px; "
            f"accepted: model.input_size=null (its own), or model.kwargs.img_size={list(size)}."
        )


def load_timm(
    arch: str,
    weights: str | None = None,
    *,
    kwargs: Mapping | None = None,
    **shared: Unpack[CheckpointModelKeys],
) -> nn.Module:
    """A timm model by name (``pip install timm``), in eval mode, with its metadata.

    Args:
        arch: a timm model name (``timm.list_models()``; a pretrained tag such as
            ``resnet50.a1_in1k`` picks its weights and their preprocessing).
        weights: null (random initialisation, seeded: offline) or ``pretrained`` (timm's own
            cache, the Hugging Face hub: needs the files there or internet access).
        kwargs: more ``timm.create_model`` keywords (``{img_size: 32, depth: 2}``).
        **shared: :class:`~bench.models.meta.CheckpointModelKeys` (a ``checkpoint`` is loaded
            after creation, with weights null); null ``input_size`` is the model's own
            (``img_size``, else its ``pretrained_cfg``), null ``mean`` and ``std`` its
            ``pretrained_cfg``'s, null ``resize_size`` the input over its ``crop_pct`` (timm's
            evaluation transform); ``cam_layer: auto`` is :func:`timm_cam_layer`; ``name``
            defaults to ``arch``, ``num_classes`` to the architecture's.
    """
    keys = model_keys(load_timm, shared, CheckpointModelKeys)
    timm = import_timm()
    _checked_arch(timm, arch)
    _check_weights(weights, keys["checkpoint"])
    kw = timm_kwargs(kwargs)
    num_classes = keys.checked_classes()
    if num_classes is not None:
        kw["num_classes"] = num_classes
    pre = timm_preprocessing(arch, kwargs, keys["input_size"], keys["mean"], keys["std"])
    model = _create(timm, arch, weights == "pretrained", kw)
    extra: dict = {"arch": arch, "kwargs": timm_kwargs(kwargs),
                   "resize_size": keys.resize_size(pre["resize_size"]),
                   "interpolation": pre["interpolation"], "init_seed": INIT_SEED}  # fmt: skip
    weights_name = weights or "random"
    if keys["checkpoint"]:
        created = model
        model, record = keys.load_checkpoint(lambda: created, arch)
        extra.update(record)
        weights_name = Path(keys["checkpoint"]).name
    size = keys["input_size"] = image_size(pre["input_size"])
    _check_size(model, arch, size)
    model.eval()
    keys["num_classes"] = count_classes(model, size, keys["num_classes"], arch)
    layout = timm_layout(model)
    if keys["cam_layer"] == "auto":
        keys["cam_layer"] = timm_cam_layer(model, layout, size)
    keys.update(name=keys["name"] or arch, mean=pre["mean"], std=pre["std"])
    return keys.attach(model, weights_name, extra, layout)
