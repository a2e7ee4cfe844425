"""Attention-based maps for vision transformers: torchvision's, timm's and Hugging Face's ViT / DeiT.

Attention probabilities ``[B, heads, T, T]`` are read from every global self-attention module of
the model, in forward order, however the model computes them (:func:`attention_weights`):

- ``nn.MultiheadAttention`` (torchvision): a forward pre-hook asks for the weights
  (``need_weights=True, average_attn_weights=False``; torchvision's blocks pass
  ``need_weights=False``) and a forward hook stores them.
- a fused ``qkv`` projection (timm's ``Attention``) or separate query, key and value projections
  (Hugging Face's ViT and DeiT attention): these models may compute attention in one fused call
  (``F.scaled_dot_product_attention``, Hugging Face's ``sdpa``) that no hook sees, so a forward
  hook recomputes ``softmax(q k^T * scale)`` from the module's input with its own projections,
  and checks it: the module's output rebuilt from these probabilities (``attn @ v``, then the
  output projection) must equal the output the model computed (else one line refuses the model).
  The hooks return nothing, so the logits are those of the model without them.

Windowed attention (Swin: each token attends within its window, with a relative position bias, and
there is no class token) is refused. Token layout: the prefix tokens the model's loader states
(``FeatureLayout.prefix_tokens``: a class token, DeiT's distillation token) then the patch grid
row by row; without a stated layout, one class token and a square grid (torchvision). Hooks are
removed in ``finally``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError, check_choice, check_number
from bench.core.layers import FeatureLayout, module_device, token_grid
from bench.methods.base import Method, need
from bench.methods.cam import GradCAM
from bench.methods.layers import layout_of, probe_stated

HEAD_FUSIONS = ("mean", "max", "min")
#: The projections of a self-attention module with separate query, key and value, as
#: ``(query, key, value, output or None)``: Hugging Face's ViT / DeiT (transformers 5; 4.x).
SEPARATE = (("q_proj", "k_proj", "v_proj", "o_proj"), ("query", "key", "value", None))


def is_windowed(m: nn.Module) -> bool:
    """Whether ``m`` is windowed attention (Swin's: projections, and a window size or a relative
    position bias)."""
    if not isinstance(getattr(m, "qkv", None), nn.Linear) and _projections(m) is None:
        return False
    names = [n for n, _ in m.named_parameters(recurse=False)] + [n for n, _ in m.named_children()]
    return hasattr(m, "window_size") or any(n.startswith("relative_position") for n in names)


def attention_kind(m: nn.Module) -> str | None:
    """``mha``, ``qkv`` (one fused projection), ``separate`` (query, key, value) or None: how the
    attention probabilities of module ``m`` are read (None: not global self-attention)."""
    if isinstance(m, nn.MultiheadAttention):
        return "mha"
    if is_windowed(m):
        return None
    if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(
        getattr(m, "proj", None), nn.Linear
    ):
        return "qkv" if hasattr(m, "num_heads") and hasattr(m, "scale") else None
    if _projections(m) is not None and _heads(m) is not None:
        return "separate"
    return None


def _projections(m: nn.Module) -> tuple[str, str, str, str | None] | None:
    for names in SEPARATE:
        if all(isinstance(getattr(m, n, None), nn.Linear) for n in names[:3]):
            return names
    return None


def _heads(m: nn.Module) -> int | None:
    heads = getattr(m, "num_attention_heads", getattr(m, "num_heads", None))
    return heads if isinstance(heads, int) else None


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, kind)`` of the model's global self-attention modules in registration
    (forward) order; see :func:`attention_kind`."""
    found = [(n, m, attention_kind(m)) for n, m in model.named_modules()]
    return [(n, m, k) for n, m, k in found if k is not None]


def prefix_of(layout: FeatureLayout | None) -> int:
    """The tokens before the patch grid: the stated layout's, else 1 (a class token)."""
    return 1 if layout is None or layout.prefix_tokens is None else layout.prefix_tokens


def prefix_tokens(model: nn.Module) -> int:
    """The tokens before the patch grid of ``model`` (:func:`prefix_of` its stated layout)."""
    return prefix_of(layout_of(model))


def patch_grid(model: nn.Module, tokens: int, size: Sequence[int]) -> tuple[int, int]:
    """``(h, w)`` of the patch grid of ``tokens`` tokens of ``model`` (:func:`grid_of`)."""
    return grid_of(layout_of(model), tokens, size)


def grid_of(layout: FeatureLayout | None, tokens: int, size: Sequence[int]) -> tuple[int, int]:
    """``(h, w)`` of the patch grid of ``tokens`` tokens for an input of ``size`` ``(H, W)``: the
    stated layout's prefix tokens first, the grid of the input's aspect (without a layout: one
    class token and a square grid); a ConfigError when they form none."""
    prefix = prefix_of(layout)
    grid = token_grid(tokens, prefix, size if layout is not None else (1, 1))
    if grid is None:
        raise ConfigError(
            f"{tokens} tokens minus {prefix} prefix token(s) form no patch grid of a "
            f"{size[0]}x{size[1]} input; accepted: a vision transformer whose tokens are the "
            "prefix tokens its loader states (class token: 1) and a patch grid."
        )
    return grid


def _explicit(m: nn.Module, kind: str, x: Tensor) -> tuple[Tensor, Tensor]:
    """Attention probabilities ``[B, heads, T, T]`` of module ``m`` for its input ``x`` ``[B, T,
    D]``, computed explicitly with its own projections, and its output rebuilt from them."""
    b, n, _ = x.shape
    if kind == "qkv":  # timm's Attention
        q, k, v = m.qkv(x).reshape(b, n, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = (
            m.q_norm(q) if hasattr(m, "q_norm") else q,
            m.k_norm(k) if hasattr(m, "k_norm") else k,
        )
        probs = ((q * m.scale) @ k.transpose(-2, -1)).softmax(-1)
        out = (probs @ v).transpose(1, 2).reshape(b, n, -1)
        out = m.norm(out) if isinstance(getattr(m, "norm", None), nn.Module) else out
        if getattr(m, "gate", None) is not None:
            out = out * m.gate(x).sigmoid()
        return probs, m.proj(out)
    qn, kn, vn, on = _projections(m)  # Hugging Face's ViT / DeiT attention
    q, k, v = (getattr(m, p)(x).view(b, n, _heads(m), -1).transpose(1, 2) for p in (qn, kn, vn))
    scale = getattr(m, "scaling", q.shape[-1] ** -0.5)
    probs = (q @ k.transpose(-2, -1) * scale).softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(b, n, -1)
    return probs, getattr(m, on)(out) if on else out


def _read(name: str, m: nn.Module, kind: str, args: tuple, kwargs: dict, out: object) -> Tensor:
    """The probabilities of ``m`` for one call, checked against the output it computed."""
    x = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
    masks = [kwargs.get(k) for k in ("attn_mask", "attention_mask")] + list(args[1:2])
    if any(isinstance(mask, Tensor) for mask in masks):
        raise ConfigError(
            f"the attention module {name} ({type(m).__name__}) is called with a mask; accepted: "
            "unmasked self-attention (an image classifier's)."
        )
    probs, rebuilt = _explicit(m, kind, x)
    got = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(got, Tensor) or got.shape != rebuilt.shape:
        raise ConfigError(
            f"the attention module {name} ({type(m).__name__}) outputs "
            f"{getattr(got, 'shape', type(got).__name__)}, not the {list(rebuilt.shape)} its "
            "projections give; its attention cannot be read."
        )
    tol = 1e-4 * float(got.abs().max().clamp_min(1.0))
    diff = float((got - rebuilt).abs().max())
    if not diff <= tol:
        raise ConfigError(
            f"the attention recomputed for module {name} ({type(m).__name__}) does not give its "
            f"output (max |difference| {diff:.3g} > {tol:.3g}); accepted: attention whose output "
            "is softmax(q k^T * scale) v through its own projections (timm's Attention, Hugging "
            "Face's ViT / DeiT, nn.MultiheadAttention)."
        )
    return probs


def attention_weights(model: nn.Module, images: Tensor, last_only: bool = False) -> list[Tensor]:
    """Attention probabilities ``[B, heads, T, T]`` of every global self-attention module, in
    forward order (see the module docstring); one forward pass without gradients. ``last_only``:
    of the last module alone (the others are neither hooked nor recomputed)."""
    store: list[Tensor] = []
    handles = []

    def mha_pre(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def mha_post(_m: nn.Module, _args: tuple, out: tuple) -> None:
        store.append(out[1])

    def explicit(name: str, kind: str):
        def hook(m: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
            store.append(_read(name, m, kind, args, kwargs, out))

        return hook

    try:
        modules = attention_modules(model)
        for name, m, kind in modules[-1:] if last_only else modules:
            if kind == "mha":
                handles.append(m.register_forward_pre_hook(mha_pre, with_kwargs=True))
                handles.append(m.register_forward_hook(mha_post))
            else:
                handles.append(m.register_forward_hook(explicit(name, kind), with_kwargs=True))
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    return store


@need("attention", "global self-attention over a class token and the patch grid (ViT, DeiT)")
def _attention(method: Method, model: nn.Module) -> str | None:
    """Global self-attention modules whose weights can be read, a class token, and (probed with
    one image at the model's input size when its loader states it) weights that check out."""
    if not attention_modules(model):
        windowed = sorted({type(m).__name__ for m in model.modules() if is_windowed(m)})
        if windowed:
            return (
                f"its attention is windowed ({', '.join(windowed)}): each token attends only "
                "within its window and no class token attends to every patch; accepted: "
                "vision transformers with global self-attention and a class token (ViT, DeiT)."
            )
        return (
            "it has no nn.MultiheadAttention module nor a timm or Hugging Face self-attention "
            "module (not a vision transformer); accepted: ViT-like models (torchvision, timm, "
            "Hugging Face ViT and DeiT)."
        )
    if prefix_tokens(model) < 1:
        return (
            "its tokens have no class token (its loader states 0 tokens before the patch grid), "
            "whose attention these maps read; accepted: vision transformers with a class token."
        )
    size = getattr(getattr(model, "bench_meta", None), "input_size", None)
    if size is None:
        return None
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    try:
        weights = attention_weights(model, image.to(module_device(model)))
        patch_grid(model, weights[-1].shape[-1], size)
    except ConfigError as err:
        return str(err)
    return None


def _tokens_error(method: ViTGradCAM, model: nn.Module) -> str | None:
    error, name, out = probe_stated(
        method,
        model,
        3,
        "tokens [B, T, D]",
        "a layer of the encoder (e.g. the last block's first norm: ln_1, norm1, layernorm_before).",
    )
    if error is not None or out is None:
        return error
    try:
        patch_grid(model, out.shape[1], model.bench_meta.input_size)
    except ConfigError as err:
        return f"layer={name} outputs {out.shape[1]} tokens: {err}"
    return None


@need("tokens", "a layer (the method's layer) whose output is tokens [B, prefix + h*w, D]")
def _tokens(method: ViTGradCAM, model: nn.Module) -> str | None:
    """A layer whose output is the prefix tokens and a patch grid of tokens (probed with one zero
    image at the model's input size when its loader states it)."""
    return _tokens_error(method, model)


def _fuse(att: Tensor, head_fusion: str) -> Tensor:
    if head_fusion == "mean":
        return att.mean(1)
    return att.amax(1) if head_fusion == "max" else att.amin(1)


def class_token_map(model: nn.Module, rows: Tensor, size: Sequence[int]) -> Tensor:
    """The class token's row of ``rows`` ``[B, T, T]`` over the patches, as ``[B, h, w]``."""
    h, w = patch_grid(model, rows.shape[-1], size)
    return rows[:, 0, prefix_tokens(model) :].reshape(-1, h, w)


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
        att = _fuse(attention_weights(model, images, last_only=True)[-1], self.head_fusion)
        return class_token_map(model, att, images.shape[-2:])


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
        return class_token_map(model, rollout, images.shape[-2:])


class ViTGradCAM(GradCAM):
    """Grad-CAM on a vision transformer's token grid (as pytorch-grad-cam's ViT recipe).

    The layer's output ``[B, prefix + h*w, D]`` loses its prefix tokens (the class token; DeiT's
    distillation token) and becomes feature maps ``[B, D, h, w]``; Grad-CAM weights them by the
    spatial mean of the gradients. The usual layer is the last block's first LayerNorm
    (``encoder.layers.encoder_layer_<L-1>.ln_1`` in torchvision, ``blocks.<L-1>.norm1`` in timm,
    ``vit.layers.<L-1>.layernorm_before`` in Hugging Face's ViT).

    Args:
        layer: the model config's ``cam_layer`` (a layer with token output).
    """

    needs = frozenset({"tokens"})  # GradCAM on the token grid: not feature maps, nor attention

    def to_grid(self, out: Tensor, layout: FeatureLayout | None, size: Sequence[int]) -> Tensor:
        if out.ndim != 3:
            raise self.unfit_shape(out)
        h, w = grid_of(layout, out.shape[1], size)
        prefix = prefix_of(layout)
        return out[:, prefix:].reshape(out.shape[0], h, w, out.shape[2]).permute(0, 3, 1, 2)

    def unfit_shape(self, out: Tensor) -> ConfigError:
        return ConfigError(
            f"{self.name} needs a layer with token output [B, T, D]; layer={self.layer} "
            f"gives shape {tuple(out.shape)}."
        )
