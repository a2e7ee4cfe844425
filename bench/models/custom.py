"""A user's own ``nn.Module`` by import path, with weights from a local checkpoint (or random)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from bench.core.checkpoints import load_weights
from bench.core.errors import ConfigError, check_bool, check_int
from bench.core.origin import STDLIB, check_model_object
from bench.models.meta import attach_meta, count_classes, image_size


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


def load_module(
    module: str,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    checkpoint: str | None = None,
    strip_prefix: str | None = None,
    args: dict | None = None,
    num_classes: int | None = None,
    cam_layer: str | None = "auto",
    name: str = "custom",
    trust_checkpoint: bool = False,
    probabilities: str = "softmax",
) -> nn.Module:
    """A user's own ``nn.Module`` by import path, with weights from a local checkpoint (or random).

    Args:
        module: import path of the class or factory (``my_pkg.nets.Net``), called with ``args``.
        input_size: ``(H, W)`` the model expects.
        mean: normalisation mean the model was trained with (no default: nothing implicit).
        std: normalisation std.
        checkpoint: a pickled model, a state dict, or a dict holding one; null = random weights.
        strip_prefix: removed from the checkpoint's keys.
        args: keyword arguments of the constructor.
        num_classes: expected number of logits (checked by one forward pass); null = as found.
        cam_layer: module name for CAM methods, ``auto`` or null.
        name: the ``model`` column of result rows.
        trust_checkpoint: allow a checkpoint that is a pickled model (unpickling runs code).
        probabilities: ``softmax`` (one label per image) or ``sigmoid`` (a multi-label head).
    """
    input_size = image_size(input_size)
    if num_classes is not None:
        num_classes = check_int("model.num_classes", num_classes, minimum=1)
    extra: dict = {"module": module}
    if checkpoint:
        model, record = load_weights(
            checkpoint,
            lambda: build_module(module, args),
            module,
            strip_prefix,
            trust=check_bool("model.trust_checkpoint", trust_checkpoint),
        )
        extra.update(record)
    else:
        model = build_module(module, args)
    counted = count_classes(model, input_size, num_classes, module)
    weights = Path(checkpoint).name if checkpoint else "random"
    return attach_meta(
        model,
        name,
        weights,
        cam_layer,
        input_size,
        mean,
        std,
        counted,
        extra,
        probabilities=probabilities,
    )
