"""Every method on timm and Hugging Face models (ViT, DeiT, Swin, ConvNeXt; random weights, tiny
inputs): a map of the right shape or a refusal in one line; attention read however the model
computes it (fused or not), checked against the model's own output, never changing the logits;
the layout read right (Swin's channels-last maps, DeiT's two prefix tokens, a non-square grid)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import ConfigError, Unfit
from bench.methods.attention import attention_modules, attention_weights
from bench.methods.base import Method
from bench.models import load_timm, meta_of
from tests._transformers import HF_CORE, TIMM_CORE, load_family
from tests.methods.conftest import METHODS, make_method

pytest.importorskip("timm", reason="model=timm needs the optional timm package")
pytest.importorskip("transformers", reason="model=hf needs the optional transformers package")

#: The unmarked subset: the methods the issue names on each timm family (the rest is slow).
FAST_METHODS = ("gradient", "gradcam", "vit_gradcam", "attention_rollout", "raw_attention", "cam")
ATTENTION = ("attention_rollout", "raw_attention")


@pytest.fixture(scope="module")
def families() -> dict[str, nn.Module]:
    return {f: load_family(f) for f in (*TIMM_CORE, *HF_CORE, "hf_deit")}


def method_for(name: str, model: nn.Module) -> Method:
    """The method ``name`` composed for ``model``'s CAM layer, with the test's fast settings."""
    return make_method(name, "none", overrides=[f"model.cam_layer={meta_of(model).cam_layer}"])


def images_for(model: nn.Module, n: int = 2) -> Tensor:
    side = meta_of(model).input_size
    return torch.randn(n, 3, *side, generator=torch.Generator().manual_seed(0))


def outcome(name: str, model: nn.Module) -> str:
    """``works`` (a finite map ``[B, H, W]``) or the one-line refusal."""
    method = method_for(name, model)
    try:
        method.check(model)
    except Unfit as err:
        assert "\n" not in str(err) and f"(needs {err.need})" in str(err), str(err)
        return f"refused: {err.why}"
    x = images_for(model)
    maps = method(model, x, torch.tensor([0, 3]))
    assert maps.shape == (2, *x.shape[-2:]) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all(), name
    return "works"


@pytest.mark.parametrize("family", TIMM_CORE)
@pytest.mark.parametrize("name", FAST_METHODS)
def test_the_named_methods_on_each_timm_family(families, family, name):
    got = outcome(name, families[family])
    transformer = family in ("timm_vit", "timm_deit")
    if name == "gradcam" or (name == "vit_gradcam" and transformer):
        assert got == "works", got
    if name in ATTENTION:
        assert (got == "works") == transformer, got
        if family == "timm_swin":
            assert got.startswith("refused: its attention is windowed (WindowAttention)"), got
    if name == "vit_gradcam" and not transformer:
        assert got.startswith("refused: layer="), got
    if name == "cam":  # ConvNeXt's head normalises the pooled features: not layer -> GAP -> linear
        expected = {"timm_convnext": "the linear head's input is not the global average of layer"}
        assert got.startswith(
            f"refused: {expected.get(family, 'it has no global average pooling')}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("family", (*TIMM_CORE, *HF_CORE))
@pytest.mark.parametrize("name", METHODS)
def test_every_method_on_every_family_maps_or_is_refused(families, family, name):
    got = outcome(name, families[family])
    if name == "gradcam":
        assert got == "works", got


@pytest.mark.parametrize("family", ("timm_vit", "timm_deit", "hf_vit", "hf_deit"))
def test_fused_and_explicit_attention_give_the_same_rollout(families, family):
    model = families[family]
    x = images_for(model, 3)
    t = torch.zeros(3, dtype=torch.long)
    rollout = method_for("attention_rollout", model)
    fused = rollout(model, x, t)
    explicit_weights = _explicit_reference(model, x)  # the model's own softmax, hooked
    assert len(explicit_weights) == 2
    with _explicit(model):
        explicit = rollout(model, x, t)
        ours = attention_weights(model, x)
    assert torch.allclose(fused, explicit, atol=1e-5, rtol=1e-4)
    for a, b in zip(ours, explicit_weights):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    prefix = meta_of(model).layout.prefix_tokens
    assert ours[-1].shape[-1] == prefix + 16  # DeiT: class + distillation tokens, 4 x 4 patches


class _explicit:
    """Within it the model's attention is computed explicitly (timm ``fused_attn=False``,
    Hugging Face's eager attention), the path whose probabilities a hook can see."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.saved = [(m, m.fused_attn) for m in self.model.modules() if hasattr(m, "fused_attn")]
        for m, _ in self.saved:
            m.fused_attn = False
        hf = getattr(self.model, "hf", None)
        if hf is not None:
            self.impl = hf.config._attn_implementation
            hf.set_attn_implementation("eager")

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.saved:
            m.fused_attn = flag
        hf = getattr(self.model, "hf", None)
        if hf is not None:
            hf.set_attn_implementation(self.impl)


def _explicit_reference(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The probabilities the model itself computes on its explicit path: what timm's attention
    dropout receives, or Hugging Face's ``output_attentions``."""
    with _explicit(model), torch.no_grad():
        hf = getattr(model, "hf", None)
        if hf is not None:
            return list(hf(pixel_values=x, output_attentions=True).attentions)
        store: list[Tensor] = []
        hooks = [
            m.attn_drop.register_forward_hook(lambda _m, args, _o: store.append(args[0]))
            for _, m, _k in attention_modules(model)
        ]
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
        return store


@pytest.mark.parametrize("family", ("timm_vit", "hf_vit"))
def test_reading_attention_leaves_the_logits_unchanged(families, family):
    model = families[family]
    x = images_for(model, 3)
    seen: list[Tensor] = []
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    handle = model.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            plain = model(x)
        attention_weights(model, x)
    finally:
        handle.remove()
    assert torch.equal(seen[0], plain) and torch.equal(seen[1], plain)
    assert hooks == [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]


def test_attention_that_does_not_check_out_is_refused():
    """timm's fused path ignores ``scale``; a wrong one makes the recomputation differ."""
    model = load_family("timm_vit")
    blocks = [m for _, m, _k in attention_modules(model)]
    assert all(m.fused_attn for m in blocks)
    blocks[0].scale = blocks[0].scale * 3
    with pytest.raises(Unfit, match=r"\(needs attention\): the attention recomputed for module "
                       r"blocks\.0\.attn \(Attention\) does not give its output"):  # fmt: skip
        method_for("attention_rollout", model).check(model)


def _cam_layer_output_and_grad(model, x, t):
    """The CAM layer's output on ``x`` (detached) and the gradient of the targets' logits
    ``t`` with respect to it, computed by hand."""
    layer = model.get_submodule(meta_of(model).cam_layer)
    store = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.setdefault("a", out))
    try:
        logits = model(x.clone().requires_grad_(True))
        (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), store["a"])
    finally:
        handle.remove()
    return store["a"].detach(), grad


def test_deit_maps_skip_both_prefix_tokens(families):
    """Grad-CAM on DeiT's tokens equals Grad-CAM computed by hand on tokens 2.. as a 4 x 4 grid."""
    model = families["timm_deit"]
    x, t = images_for(model), torch.tensor([1, 4])
    acts, grad = _cam_layer_output_and_grad(model, x, t)
    acts = acts[:, 2:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
    grad = grad[:, 2:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
    cam = (grad.mean((2, 3))[:, :, None, None] * acts).sum(1).clamp_min(0)
    expected = F.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[
        :, 0
    ]
    got = method_for("gradcam", model)(model, x, t)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)


def test_swin_channels_last_maps_are_permuted_not_misread(families):
    """On Swin's [B, h, w, C] output Grad-CAM pools over h, w (not over w, C)."""
    model = families["timm_swin"]
    x, t = images_for(model), torch.tensor([0, 2])
    acts, grad = _cam_layer_output_and_grad(model, x, t)
    assert acts.shape[1:3] == (8, 8) and acts.shape[3] == 32  # [B, h, w, C]
    cam = (grad.mean((1, 2))[:, None, None, :] * acts).sum(-1).clamp_min(0)
    expected = F.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[
        :, 0
    ]
    assert torch.allclose(method_for("gradcam", model)(model, x, t), expected, atol=1e-6)


def test_a_non_square_vit_grid_follows_the_input():
    model = load_timm(
        "vit_tiny_patch16_224",
        num_classes=3,
        kwargs={"img_size": [32, 48], "patch_size": 8, "depth": 1, "embed_dim": 16, "num_heads": 2},
    )
    assert meta_of(model).input_size == (32, 48)
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    for name in ("gradcam", "attention_rollout"):
        maps = method_for(name, model)(model, x, torch.tensor([0, 1]))
        assert maps.shape == (2, 32, 48) and torch.isfinite(maps).all()
    with pytest.raises(ConfigError, match=r"form no patch grid of a 32x32 input"):
        meta_of(model).layout.to_maps(torch.zeros(1, 25, 16), (32, 32))
