"""The method contract, enforced once: input checks, model-state guard, channel pooling, upsampling."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import ConfigError

#: Channel pooling of a ``[B, C, H, W]`` attribution into ``[B, H, W]`` (PROTOCOLS.md §4 names).
REDUCTIONS = {
    "sum": lambda a: a.sum(1),
    "abs_sum": lambda a: a.sum(1).abs(),
    "pos_sum": lambda a: a.sum(1).clamp_min(0),
    "max_abs": lambda a: a.abs().amax(1),
    "l1": lambda a: a.abs().sum(1),
    "l2": lambda a: a.pow(2).sum(1).sqrt(),
    "l2_squared": lambda a: a.pow(2).sum(1),
}


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as in ``model.named_modules()``), or a ConfigError with close names."""
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ConfigError(
            f"layer={name!r} is not a submodule of {type(model).__name__}.{hint} "
            f"Accepted: any name from model.named_modules(), e.g. {', '.join(names[-3:])}."
        )
    return model.get_submodule(name)


@contextmanager
def preserve_model(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the call; train mode and ``requires_grad`` restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class Method:
    """Base class of every attribution method.

    Subclasses implement :meth:`attribute`, returning ``[B, C, h, w]`` (pooled here with
    ``reduction``) or ``[B, h, w]`` (used as is); maps are upsampled bilinearly to the input's
    ``H, W`` here. ``method(model, images, targets)`` returns float32 ``[B, H, W]`` on the input's
    device and leaves the model as it found it.

    Args:
        reduction: channel pooling for channel-wise attributions, one of :data:`REDUCTIONS`.
    """

    def __init__(self, reduction: str = "sum") -> None:
        if reduction not in REDUCTIONS:
            raise ConfigError(
                f"reduction={reduction} is not valid; accepted: {', '.join(REDUCTIONS)}."
            )
        self.reduction = reduction

    @property
    def name(self) -> str:
        return type(self).__name__

    def check(self, model: nn.Module) -> None:
        """Raise a ConfigError when this method cannot apply to ``model``. Called once per run."""

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """Raw attributions ``[B, C, h, w]`` or ``[B, h, w]`` for ``targets`` ``[B]``."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W]; got shape {tuple(images.shape)}.")
        if targets.shape != (images.shape[0],):
            raise ValueError(
                f"targets must be [B] = [{images.shape[0]}]; got shape {tuple(targets.shape)}."
            )
        with preserve_model(model):
            raw = self.attribute(model, images, targets.long())
        return self.postprocess(raw, images.shape[-2:])

    def postprocess(self, raw: Tensor, size: torch.Size) -> Tensor:
        """Pool channels and upsample ``raw`` to ``size``; float32 ``[B, H, W]``."""
        raw = raw.detach().float()
        if raw.ndim == 4:
            raw = REDUCTIONS[self.reduction](raw)
        if raw.ndim != 3:
            raise ValueError(f"{self.name}.attribute returned shape {tuple(raw.shape)}; expected 3 or 4 dims.")
        if tuple(raw.shape[-2:]) != tuple(size):
            raw = F.interpolate(raw[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        return raw.contiguous()
