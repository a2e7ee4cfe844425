"""Submodules by name (the one lookup methods, metrics and model loaders share) and the layout of
what they output (:class:`FeatureLayout`: feature maps, channels last, or tokens)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

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


#: How a model lays out its spatial features (``FeatureLayout.maps``): channels first
#: ``[B, C, h, w]`` (convolutions) or channels last ``[B, h, w, C]`` (timm's Swin).
MAP_LAYOUTS = ("nchw", "nhwc")


def token_grid(tokens: int, prefix: int, input_size: Sequence[int]) -> tuple[int, int] | None:
    """``(h, w)`` of the patch grid that ``tokens - prefix`` patch tokens form for an input of
    ``input_size`` ``(H, W)`` (the grid has the input's aspect ratio), or None when they do not
    form one."""
    n = tokens - prefix
    if n < 1:
        return None
    height, width = int(input_size[0]), int(input_size[1])
    h = max(1, round(math.sqrt(n * height / width)))
    for gh in (h, h - 1, h + 1):
        if gh < 1 or n % gh:
            continue
        ph, pw = height / gh, width / (n // gh)  # the patch's sides: square up to rounding
        if abs(ph - pw) <= 0.2 * max(ph, pw):
            return gh, n // gh
    return None


@dataclass(frozen=True)
class FeatureLayout:
    """How the model's layers lay out what they see of the image, stated by its loader.

    Attributes:
        maps: ``nchw`` (feature maps ``[B, C, h, w]``) or ``nhwc`` (``[B, h, w, C]``, e.g. timm's
            Swin stages); the layout of every 4-D output.
        prefix_tokens: for a transformer, the tokens before the patch tokens in a 3-D output
            ``[B, T, D]`` (1: a class token; 2: DeiT's class and distillation tokens; 0: patch
            tokens only, e.g. Hugging Face's Swin); the patch tokens follow in row-major order.
            None: the model has no token layers.
    """

    maps: str = "nchw"
    prefix_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.maps not in MAP_LAYOUTS:
            raise ConfigError(
                f"layout maps={self.maps} is not valid; accepted: {', '.join(MAP_LAYOUTS)}."
            )

    def describe(self, out: Tensor) -> str | None:
        """Why ``out`` cannot be read as feature maps under this layout, or None when it can
        (:meth:`to_maps` needs the input size too: a token count that forms no grid is its error)."""
        shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
        if isinstance(out, Tensor) and out.ndim == 4:
            return None
        if isinstance(out, Tensor) and out.ndim == 3 and self.prefix_tokens is not None:
            return None
        tokens = "" if self.prefix_tokens is None else " or tokens [B, T, D]"
        return f"an output of shape {shape} is not feature maps [B, K, h, w]{tokens}"

    def to_maps(self, out: Tensor, input_size: Sequence[int]) -> Tensor:
        """``out`` as feature maps ``[B, K, h, w]``: channels-last maps permuted, tokens without
        the prefix tokens reshaped into the patch grid of an ``input_size`` input; a ConfigError
        naming the shape when it is neither."""
        why = self.describe(out)
        if why is not None:
            raise ConfigError(f"{why}; accepted: {self.accepted()}.")
        if out.ndim == 4:
            return out.permute(0, 3, 1, 2) if self.maps == "nhwc" else out
        grid = token_grid(out.shape[1], self.prefix_tokens, input_size)
        if grid is None:
            raise ConfigError(
                f"{out.shape[1]} tokens minus {self.prefix_tokens} prefix token(s) form no patch "
                f"grid of a {input_size[0]}x{input_size[1]} input; accepted: {self.accepted()}."
            )
        b, _, d = out.shape
        return out[:, self.prefix_tokens :].reshape(b, *grid, d).permute(0, 3, 1, 2)

    def zero_channels(self, out: Tensor, channels: Tensor) -> Tensor:
        """A copy of ``out`` ``[k, ...]`` (a layer's output in this layout) with channel
        ``channels[i]`` (long ``[k]``) of item ``i`` set to 0 at every position (prefix tokens
        kept): the ablation of one feature map per item."""
        out = out.clone()
        items = torch.arange(out.shape[0], device=out.device)
        if out.ndim == 4 and self.maps == "nchw":
            out[items, channels] = 0
        elif out.ndim == 4:
            out[items, :, :, channels] = 0
        else:
            patches = torch.arange(self.prefix_tokens or 0, out.shape[1], device=out.device)
            out[items[:, None], patches[None, :], channels[:, None]] = 0
        return out

    def accepted(self) -> str:
        """What this layout reads, in words."""
        maps = "[B, C, h, w]" if self.maps == "nchw" else "channels-last [B, h, w, C]"
        if self.prefix_tokens is None:
            return f"a layer with feature maps {maps}"
        return (
            f"a layer with feature maps {maps} or tokens [B, {self.prefix_tokens} + h*w, D] "
            "(prefix tokens, then the patch grid row by row)"
        )
