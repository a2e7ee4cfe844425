"""Submodules by name: the one lookup methods, metrics and model loaders share."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

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
