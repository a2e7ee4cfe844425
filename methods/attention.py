"""Attention-based maps for vision transformers (torchvision's ``VisionTransformer`` and the like).

Attention weights are read from every ``nn.MultiheadAttention`` of the encoder: a forward pre-hook
asks for them (``need_weights=True, average_attn_weights=False``; torchvision's blocks pass
``need_weights=False``) and a forward hook stores them; both hooks are removed in ``finally``.
Token layout: ``[class token, patch tokens in row-major order]``, a square grid of patches.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError, check_choice, check_number
from bench.methods.base import Method, need
from bench.methods.cam import GradCAM, probe_stated

HEAD_FUSIONS = ("mean", "max", "min")


def attention_modules(model: nn.Module) -> list[nn.MultiheadAttention]:
    """The model's ``nn.MultiheadAttention`` modules in forward order (registration order)."""
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


@need("attention", "nn.MultiheadAttention modules (a vision transformer)")
def _attention(method: Method, model: nn.Module) -> str | None:
    if attention_modules(model):
        return None
    return (
        "it has no nn.MultiheadAttention module (not a vision transformer); "
        "accepted: torchvision VisionTransformer-like models."
    )


def _grid_error(tokens: int, prefix: int) -> str | None:
    g = math.isqrt(tokens - prefix)
    if g * g == tokens - prefix:
        return None
    return (
        f"{tokens} tokens minus {prefix} class token(s) is not a square grid of patches; "
        "accepted: a vision transformer whose tokens are a class token + a square patch grid."
    )


def patch_grid(tokens: int, prefix: int = 1) -> int:
    """Side of the square patch grid for ``tokens`` tokens of which ``prefix`` are not patches."""
    error = _grid_error(tokens, prefix)
    if error is not None:
        raise ConfigError(error)
    return math.isqrt(tokens - prefix)


@need("tokens", "a layer (the method's layer) whose output is tokens [B, 1 + g*g, D]")
def _tokens(method: ViTGradCAM, model: nn.Module) -> str | None:
    """A layer whose output is a class token and a square grid of patch tokens (probed with one
    zero image at the model's input size when its loader states it)."""
    error, name, out = probe_stated(
        method,
        model,
        3,
        "tokens [B, T, D]",
        "a layer of the encoder (e.g. the last block's ln_1).",
    )
    if error is not None or out is None:
        return error
    error = _grid_error(out.shape[1], 1)
    return None if error is None else f"layer={name} outputs {out.shape[1]} tokens: {error}"


def attention_weights(model: nn.Module, images: Tensor) -> list[Tensor]:
    """Attention probabilities ``[B, heads, T, T]`` of every attention module, in forward order."""
    store: list[Tensor] = []
    handles = []

    def pre(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def post(_m: nn.Module, _args: tuple, out: tuple) -> None:
        store.append(out[1])

    try:
        for m in attention_modules(model):
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post))
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    return store


def _fuse(att: Tensor, head_fusion: str) -> Tensor:
    if head_fusion == "mean":
        return att.mean(1)
    return att.amax(1) if head_fusion == "max" else att.amin(1)


class RawAttention(Method):
    """Raw attention of the last block: the class token's attention to each patch, fused over heads.

    The common baseline of attention explanations (see Abnar & Zuidema, ACL 2020; Chefer et al.,
    CVPR 2021); class-agnostic.

    Args:
        head_fusion: ``mean`` (default), ``max`` or ``min`` over heads.
    """

    needs = frozenset({"attention"})

    def __init__(self, head_fusion: str = "mean") -> None:
        super().__init__(reduction="sum")
        self.head_fusion = check_choice("head_fusion", head_fusion, HEAD_FUSIONS)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        att = _fuse(attention_weights(model, images)[-1], self.head_fusion)  # [B, T, T]
        g = patch_grid(att.shape[-1])
        return att[:, 0, 1:].reshape(-1, g, g)


class AttentionRollout(Method):
    """Attention rollout (Abnar & Zuidema, ACL 2020): product over blocks of ``0.5 A + 0.5 I``.

    Heads are fused per block, identity added for the residual path, rows renormalised; the map is
    the class token's row of the product over the patches. Class-agnostic.

    Args:
        head_fusion: ``mean`` (the paper), ``max`` or ``min`` over heads.
        discard_ratio: fraction of the lowest attention weights per block set to 0 before adding
            the identity (Gildenblat's variant; 0 = the paper).
    """

    needs = frozenset({"attention"})

    def __init__(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> None:
        super().__init__(reduction="sum")
        self.head_fusion = check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
        self.discard_ratio = check_number("discard_ratio", discard_ratio, minimum=0, below=1)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        rollout = None
        for att in attention_weights(model, images):
            a = _fuse(att, self.head_fusion)  # [B, T, T]
            if self.discard_ratio > 0:
                flat = a.flatten(1)
                k = int(flat.shape[1] * self.discard_ratio)
                if k > 0:
                    low = flat.topk(k, dim=1, largest=False).indices
                    flat = flat.scatter(1, low, 0.0)
                a = flat.view_as(a)
            eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        g = patch_grid(rollout.shape[-1])
        return rollout[:, 0, 1:].reshape(-1, g, g)


class ViTGradCAM(GradCAM):
    """Grad-CAM on a vision transformer's token grid (as pytorch-grad-cam's ViT recipe).

    The layer's output ``[B, 1 + g*g, D]`` loses its class token and becomes feature maps
    ``[B, D, g, g]``; Grad-CAM weights them by the spatial mean of the gradients. The usual layer is
    the last block's first LayerNorm (``encoder.layers.encoder_layer_<L-1>.ln_1`` in torchvision).

    Args:
        layer: the model config's ``cam_layer`` (a layer with token output).
    """

    needs = frozenset({"tokens"})  # GradCAM on the token grid: not feature maps, nor attention

    def to_grid(self, out: Tensor) -> Tensor:
        if out.ndim != 3:
            raise self.unfit_shape(out)
        g = patch_grid(out.shape[1])
        return out[:, 1:].reshape(out.shape[0], g, g, out.shape[2]).permute(0, 3, 1, 2)

    def unfit_shape(self, out: Tensor) -> ConfigError:
        return ConfigError(
            f"{self.name} needs a layer with token output [B, T, D]; layer={self.layer} "
            f"gives shape {tuple(out.shape)}."
        )
