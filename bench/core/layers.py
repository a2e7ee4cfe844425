"""Submodules by name: the one lookup methods, metrics and model loaders share."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from bench.core.errors import ConfigError


def module_names(model: nn.Module) -> list[str]:
    """Every named submodule of ``model`` in registration order (``named_modules()`` without the root)."""
    return [n for n, _ in model.named_modules() if n]


def get_layer(
    model: nn.Module, name: str, key: str = "layer", also: Sequence[str] = ()
) -> nn.Module:
    """The submodule ``name`` of ``model``, or a ConfigError naming ``key``, close names and the choices.

    ``also`` lists the other values ``key`` accepts (e.g. ``auto``, ``null``) for the message.
    """
    names = module_names(model)
    if name in names:
        return model.get_submodule(name)
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    other = f", {', '.join(also)}" if also else ""
    raise ConfigError(
        f"{key}={name} is not a submodule of {type(model).__name__}.{hint} Accepted: a name from "
        f"model.named_modules() (its last: {', '.join(names[-3:]) or 'none'}){other}."
    )


def module_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a stateless model)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def probe_outputs(
    model: nn.Module, input_size: Sequence[int], names: Sequence[str] | None = None
) -> list[tuple[str, object]]:
    """``(name, output)`` of every submodule (or of ``names``), in completion order, for one
    forward pass of a zero image ``[1, 3, H, W]`` in eval mode without gradients; the model's
    mode is restored and every hook removed, also after an error."""
    wanted = None if names is None else set(names)
    found: list[tuple[str, object]] = []
    handles = []
    for name, module in model.named_modules():
        if name and (wanted is None or name in wanted):

            def hook(_m: nn.Module, _i: tuple, out: object, name: str = name) -> None:
                found.append((name, out))

            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=module_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def is_feature_map(out: object) -> bool:
    """Whether a module output is spatial feature maps ``[B, C, h, w]`` with ``h * w > 1``."""
    return isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1


def last_feature_map_layer(model: nn.Module, input_size: Sequence[int]) -> str | None:
    """The last module (in completion order) whose output is spatial feature maps, i.e. the one
    just before global pooling: ``layer4`` for ResNets, ``features`` for DenseNet; None if none."""
    found = [name for name, out in probe_outputs(model, input_size) if is_feature_map(out)]
    return found[-1] if found else None
