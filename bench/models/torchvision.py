"""torchvision classification models by name, with their weights' metadata (input size, normalisation)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from typing_extensions import Unpack

from bench.core.checkpoints import weights_only_loads
from bench.core.errors import ConfigError, choice_error
from bench.models.meta import CheckpointModelKeys, LoaderKeys, count_classes, image_size, model_keys

log = logging.getLogger("bench.models")


def _tv_weights(arch: str, weights: str | None):
    """The torchvision weights enum member ``weights`` of ``arch`` (None for random), with checks."""
    import torchvision  # imported when a torchvision model is asked for (1-2 s), not by every run
    from torchvision.models import get_model_weights, list_models

    models = list_models(module=torchvision.models)
    if arch not in models:
        raise choice_error("model.arch", arch, models, "torchvision.models.list_models()")
    if weights is None:
        return None
    enum = get_model_weights(arch)
    if weights == "DEFAULT":
        return enum.DEFAULT
    names = [w.name for w in enum]
    if weights not in names:
        raise choice_error(f"model.weights (for {arch})", weights, [*names, "DEFAULT", "null"])
    return enum[weights]


def torchvision_weights_file(arch: str, weights: str = "DEFAULT") -> Path:
    """Where torchvision caches (and looks for) the weights file: ``torch.hub.get_dir()/checkpoints/<file>``."""
    w = _tv_weights(arch, weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path)


def _metadata(w) -> dict:
    """Input size, resize size, interpolation, mean, std and class count from a weights enum member."""
    t = w.transforms()
    return {
        "input_size": image_size(list(t.crop_size)),
        "resize_size": int(t.resize_size[0]) if getattr(t, "resize_size", None) else None,
        "interpolation": str(getattr(t.interpolation, "value", t.interpolation)),
        "mean": tuple(float(v) for v in t.mean),
        "std": tuple(float(v) for v in t.std),
        "num_classes": len(w.meta.get("categories") or []) or None,
    }


def load_torchvision(
    arch: str,
    weights: str | None = "DEFAULT",
    *,
    download: bool = True,
    kwargs: dict | None = None,
    **shared: Unpack[CheckpointModelKeys],
) -> nn.Module:
    """Any torchvision classification model by name, with its weights and metadata, in eval mode.

    Args:
        arch: the torchvision builder name (``resnet50``, ``vit_b_16``, ... ``torchvision.models.list_models()``).
        weights: a member of the architecture's weights enum (``DEFAULT``, ``IMAGENET1K_V2``, ...),
            used when cached in ``torch.hub.get_dir()/checkpoints`` or downloadable; ``null`` for
            random initialisation (throughput and sanity work) or when ``checkpoint`` is given.
        download: try to download missing enum weights (never in tests).
        kwargs: extra builder arguments (e.g. ``{dropout: 0.0}``).
        **shared: :class:`~bench.models.meta.CheckpointModelKeys`; null ``input_size``,
            ``resize_size``, ``mean`` and ``std`` are the weights' transforms' (the DEFAULT
            weights' when random), ``num_classes`` their category count (else 1000), ``name``
            the ``arch``.
    """
    keys = model_keys(load_torchvision, shared, CheckpointModelKeys)
    num_classes = keys["num_classes"] = keys.checked_classes()
    checkpoint = keys["checkpoint"]
    w = _tv_weights(arch, weights)
    if w is not None and checkpoint:
        raise ConfigError(
            f"model.weights={weights} and model.checkpoint={checkpoint} are both set; accepted: one "
            "of them (set model.weights=null to load the checkpoint)."
        )
    meta = _reference_metadata(arch, w)
    keys["input_size"], keys["mean"], keys["std"] = _preprocessing(arch, w, meta, keys)
    if (
        w is not None
        and num_classes is not None
        and meta.get("num_classes") not in (None, num_classes)
    ):
        raise ConfigError(
            f"model.num_classes={num_classes} but weights {w} have {meta['num_classes']} classes; "
            "for a fine-tuned head set model.weights=null and model.checkpoint=<your file>."
        )
    kwargs = dict(kwargs or {})
    extra: dict = {
        "arch": arch,
        "resize_size": keys["resize_size"] or meta.get("resize_size"),
        "interpolation": meta.get("interpolation"),
    }
    if w is not None:
        model, path = _enum_weights(arch, w, download, kwargs)
        weights_name = w.name
        extra["weights_file"] = str(path)
    elif checkpoint:
        model, record = _checkpoint(arch, keys, num_classes or 1000, kwargs)
        extra.update(record)
        weights_name = Path(checkpoint).name
    else:
        model = _random(arch, num_classes or meta.get("num_classes") or 1000, kwargs)
        weights_name = "random"
    keys["name"] = keys["name"] or arch
    keys["num_classes"] = count_classes(
        model, keys["input_size"], num_classes, f"the loaded {arch}"
    )
    return keys.attach(model, weights_name, extra)


def _reference_metadata(arch: str, w) -> dict:
    """The metadata of the weights ``w``, else of the architecture's DEFAULT weights (random
    initialisation), else none."""
    from torchvision.models import get_model_weights

    try:
        return _metadata(w or get_model_weights(arch).DEFAULT)
    except (ValueError, AttributeError, KeyError):
        return {}


def _checkpoint(arch: str, keys: LoaderKeys, num_classes: int, kwargs: dict) -> tuple:
    """``arch`` with ``num_classes`` logits and the weights of the local checkpoint file of
    ``keys``, and the record :func:`bench.core.checkpoints.load_weights` keeps of it."""
    from torchvision.models import get_model

    return keys.load_checkpoint(
        lambda: get_model(arch, weights=None, num_classes=num_classes, **kwargs),
        f"{arch}(num_classes={num_classes})",
    )


def _preprocessing(arch: str, w, meta: dict, keys: LoaderKeys) -> tuple:
    """``input_size``, ``mean`` and ``std`` of ``keys`` as given, else the weights' (a warning
    where given ones differ from the weights'); an error where neither says."""
    input_size = image_size(keys["input_size"]) or meta.get("input_size")
    mean = tuple(keys["mean"]) if keys["mean"] is not None else meta.get("mean")
    std = tuple(keys["std"]) if keys["std"] is not None else meta.get("std")
    if input_size is None or mean is None or std is None:
        raise ConfigError(
            f"torchvision model {arch} has no weights metadata; set model.input_size, model.mean and model.std."
        )
    for key, given in (("input_size", input_size), ("mean", mean), ("std", std)):
        if meta.get(key) is not None and w is not None and tuple(given) != tuple(meta[key]):
            log.warning(
                "model.%s=%s differs from the %s weights' %s", key, list(given), w, list(meta[key])
            )
    return input_size, mean, std


def _enum_weights(arch: str, w, download: bool, kwargs: dict) -> tuple[nn.Module, Path]:
    """``arch`` with the enum weights ``w`` (from torch's hub cache, else downloaded when
    ``download``), and the weights file; one clear line when they cannot be had."""
    from torchvision.models import get_model

    path = torchvision_weights_file(arch, w.name)
    if not path.is_file() and not download:
        raise ConfigError(
            f"model.weights={w} for {arch} is not cached: looked for {path}. Provide it by copying "
            f"{path.name} (from {w.url}) there, by pointing TORCH_HOME at a folder whose "
            f"hub/checkpoints holds it, or by model.checkpoint=<file> model.weights=null; or allow "
            "model.download=true on a machine with internet access."
        )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        with weights_only_loads():  # the hub cache may be shared: tensors only
            model = get_model(arch, weights=w, **kwargs)
    except Exception as err:  # noqa: BLE001 - any download failure becomes one clear line
        raise ConfigError(
            f"model.weights={w} for {arch}: could not load {path} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Provide the file by copying "
            f"{path.name} (from {w.url}) to {path.parent}, by TORCH_HOME=<folder holding "
            "hub/checkpoints>, or by model.checkpoint=<file> model.weights=null."
        ) from err
    finally:
        socket.setdefaulttimeout(previous)
    return model, path


def _random(arch: str, num_classes: int, kwargs: dict) -> nn.Module:
    """``arch`` randomly initialised with ``num_classes`` logits."""
    from torchvision.models import get_model

    model = get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    head = getattr(getattr(model, "heads", None), "head", None)
    if isinstance(head, nn.Linear):
        # torchvision zero-initialises the ViT head: random weights would give constant
        # outputs and zero gradients, useless for throughput and sanity work
        head.reset_parameters()
    return model
