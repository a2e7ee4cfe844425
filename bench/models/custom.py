"""A user's own ``nn.Module`` by import path, with weights from a local checkpoint (or random)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from pathlib import Path

from torch import nn
from typing_extensions import Unpack

from bench.core.errors import ConfigError
from bench.core.origin import STDLIB, check_model_object
from bench.models.meta import CheckpointKeys, HeadKeys, count_classes, image_size, model_keys


def import_object(path: str) -> object:
    """The class (an ``nn.Module`` subclass) or factory function of the user's own code at
    ``package.module.Name`` (or ``package.module:Name``); never a function of the standard library
    or of a library (:func:`bench.core.origin.check_model_object`). The config must have opted in
    with ``trust_code=true`` (checked by bench/trust.py before this imports anything)."""
    mod_name, _, attr = str(path).replace(":", ".").rpartition(".")
    if not mod_name:
        raise ConfigError(
            f"model.module={path} is not an import path; accepted: package.module.ClassName."
        )
    if mod_name.split(".")[0] in STDLIB:  # nothing of the standard library is a model
        raise ConfigError(
            f"model.module={path} is from the standard library; accepted: an nn.Module subclass, "
            "or a function of your own code that returns one."
        )
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise ConfigError(
            f"model.module={path}: cannot import {mod_name} ({err}); is it on PYTHONPATH?"
        ) from err
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=3)
        raise ConfigError(
            f"model.module={path}: {mod_name} has no {attr}."
            + (f" Did you mean {', '.join(close)}?" if close else "")
        )
    obj = getattr(module, attr)
    check_model_object(path, obj)
    return obj


def build_module(module: str, args: dict | None) -> nn.Module:
    """``module(**args)`` for the import path ``module``, checked to be an ``nn.Module``."""
    factory = import_object(module)
    try:
        model = factory(**(args or {}))
    except TypeError as err:
        raise ConfigError(
            f"model.module={module} with model.args={dict(args or {})}: {err}"
        ) from err
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.module={module} returned a {type(model).__name__}, not an nn.Module."
        )
    return model


class ModuleKeys(HeadKeys, CheckpointKeys, total=False):
    """The shared keys of a user's own module: :class:`~bench.models.meta.HeadKeys` and
    :class:`~bench.models.meta.CheckpointKeys` (its ``input_size``, ``mean`` and ``std`` have no
    default: :func:`load_module` takes them itself)."""


def load_module(
    module: str,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    args: dict | None = None,
    **shared: Unpack[ModuleKeys],
) -> nn.Module:
    """A user's own ``nn.Module`` by import path, with weights from a local checkpoint (or random).

    Args:
        module: import path of the class or factory (``my_pkg.nets.Net``), called with ``args``.
        input_size: ``(H, W)`` the model expects.
        mean: normalisation mean the model was trained with (no default: nothing implicit).
        std: normalisation std.
        args: keyword arguments of the constructor.
        **shared: :class:`ModuleKeys`; ``name`` defaults to ``custom``; no ``checkpoint`` =
            random weights.
    """
    keys = model_keys(load_module, shared, ModuleKeys, name="custom")
    keys["input_size"] = image_size(input_size)
    keys["num_classes"] = keys.checked_classes()
    extra: dict = {"module": module}
    if keys["checkpoint"]:
        model, record = keys.load_checkpoint(lambda: build_module(module, args), module)
        extra.update(record)
    else:
        model = build_module(module, args)
    keys["num_classes"] = count_classes(model, keys["input_size"], keys["num_classes"], module)
    keys.update(mean=mean, std=std)
    weights = Path(keys["checkpoint"]).name if keys["checkpoint"] else "random"
    return keys.attach(model, weights, extra)
