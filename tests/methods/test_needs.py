"""The needs methods declare (``Method.needs``, bench/methods/base.py) are right: the attention
methods are refused on CNNs, the CAM family on a layer without feature maps, and every need a
method declares is needed: run without its check on a model that lacks only that need, the method
fails, loudly or with a map that is wrong."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bench.methods
from bench.core.errors import Unfit
from bench.methods.base import NEEDS, Method
from bench.methods.cam import BaseCAM
from bench.methods.gradient import InputXGradient
from bench.models import ModelMeta
from tests.methods.conftest import METHODS, make_method, make_model

for _module in pkgutil.iter_modules(bench.methods.__path__):  # every need registered
    importlib.import_module(f"bench.methods.{_module.name}")

SIDE = 8


def with_meta(model: nn.Module, name: str) -> nn.Module:
    """``model`` in eval mode with the metadata a loader attaches (the input size to probe with)."""
    model.eval()
    if hasattr(model, "bench_meta"):  # a test model of conftest.py
        return model
    model.bench_meta = ModelMeta(
        name=name,
        weights="random",
        cam_layer=None,
        input_size=(SIDE, SIDE),
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        num_classes=4,
    )
    return model


class FunctionalReLU(nn.Module):
    """ReLU in a module of our own: the same function, a module captum has no rule for."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Convs(nn.Module):
    """conv, activation, conv, activation, pooling, linear head: the tiny CNN each witness varies
    in one way. Every variant holds the same weights (those of the same head)."""

    def __init__(
        self,
        act: Callable[[], nn.Module] = nn.ReLU,
        reuse: bool = False,
        skip: bool = False,
        head: str = "gap",
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.a1 = act()
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.a2 = act()
        self.reuse, self.skip, self.head = reuse, skip, head
        self.pool = nn.AdaptiveAvgPool2d(1)
        if head == "flatten_module":
            self.flatten = nn.Flatten()
        self.fc = nn.Linear(6 * SIDE * SIDE if head == "flat" else 6, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.a1(self.c1(x))
        g = (self.a1 if self.reuse else self.a2)(self.c2(h))
        if self.skip:
            g = g + h
        if self.head == "flat":  # no pooling: the head reads every position
            return self.fc(g.flatten(1))
        p = self.pool(g)
        return self.fc(self.flatten(p) if self.head == "flatten_module" else p.flatten(1))


class Tokens(nn.Module):
    """A class token and a 4 x 4 grid of patch tokens mixed by linear layers: tokens, no attention."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 16, 2, stride=2)
        self.cls = nn.Parameter(0.1 * torch.randn(1, 1, 16))
        self.mix = nn.Linear(17, 17)
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(x), -1, -1), t], 1)
        t = self.norm(t + self.mix(t.transpose(1, 2)).transpose(1, 2).relu())
        return self.fc(t.mean(1))


@dataclass(frozen=True)
class Witness:
    """A model that lacks one need (and meets every other need of the methods declaring it), one
    that meets it, and how a wrong map is told: ``twin`` when the fit model computes the same
    function with the same weights (the right map is the fit model's); ``reference`` the map a
    method meeting the need equals on any model; neither: the method must raise."""

    lacking: Callable[[], nn.Module]
    fit: Callable[[], nn.Module]
    layer: tuple[str, str] | None = None  # the method's layer on (lacking, fit)
    twin: bool = False
    reference: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None


def _input_x_gradient(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    return InputXGradient()(model, x, t)


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.0)  # ReLU's function in a module that is not an nn.ReLU


#: For every need, how to show it is needed.
WITNESSES = {
    "relu_modules": Witness(lambda: Convs(act=_leaky), Convs, ("c2", "c2"), twin=True),
    "feature_maps": Witness(
        lambda: Convs(head="flatten_module"),
        lambda: Convs(head="flatten_module"),
        ("flatten", "a2"),  # [B, 6] after pooling; [B, 6, 8, 8] (what the pooling averages: CAM)
    ),
    # the fit layer is a2 (what the pooling averages): c2 is before a ReLU, not layer -> GAP -> linear
    "linear_head": Witness(lambda: Convs(head="flat"), Convs, ("c2", "a2")),
    "attention": Witness(Tokens, lambda: make_model("vit")),
    "tokens": Witness(Tokens, Tokens, ("embed", "norm")),  # [B, 16, 4, 4]; [B, 17, 16]
    "deeplift_rules": Witness(lambda: Convs(act=FunctionalReLU), Convs, twin=True),
    "single_use_nonlinearities": Witness(lambda: Convs(reuse=True), Convs, twin=True),
    "lrp_rules": Witness(lambda: Convs(act=_leaky), Convs, twin=True),
    # LRP-epsilon with a tiny epsilon on a ReLU network is input x gradient (test_oracles.py)
    "modules_only": Witness(lambda: Convs(skip=True), Convs, reference=_input_x_gradient),
}


def declared_needs() -> list[tuple[str, str]]:
    """``(need, method)`` for every need every method config declares."""
    return [
        (need, name)
        for name in METHODS
        for need in sorted(make_method(name, "shapes_cnn").all_needs())
    ]


def configured(method: str, layer: str | None) -> Method:
    m = make_method(method, "shapes_cnn")
    if layer is not None:
        m.layer = layer
    return m


def images(model: nn.Module) -> Tensor:
    side = model.bench_meta.input_size
    return torch.randn(2, 3, *side, generator=torch.Generator().manual_seed(1))


def same_map(a: Tensor, b: Tensor) -> bool:
    scale = b.abs().max().clamp_min(1e-12)
    return bool(((a - b).abs() <= 1e-3 * scale).all())


def test_every_need_has_a_witness():
    assert set(WITNESSES) == set(NEEDS)
    assert {need for need, _ in declared_needs()} == set(NEEDS)


@pytest.mark.parametrize("need,method", declared_needs())
def test_each_declared_need_is_needed(need, method):
    w = WITNESSES[need]
    lacking, fit = with_meta(w.lacking(), "lacking"), with_meta(w.fit(), "fit")
    layer_lacking, layer_fit = w.layer or (None, None)
    m_lacking, m_fit = configured(method, layer_lacking), configured(method, layer_fit)
    assert NEEDS[need].test(m_lacking, lacking) is not None  # it lacks the need ...
    for other in m_lacking.all_needs() - {need}:  # ... and only that one
        assert NEEDS[other].test(m_lacking, lacking) is None, other
    assert m_fit.unmet(fit) is None
    with pytest.raises(Unfit, match=rf"\(needs {need}\)"):
        m_lacking.check(lacking)

    x, t = images(fit), torch.tensor([0, 2])
    right = m_fit(fit, x, t)  # the control: it runs where the need is met
    assert torch.isfinite(right).all() and right.abs().max() > 0
    if w.reference is not None:
        assert same_map(right, w.reference(fit, x, t))
    x = images(lacking)
    try:
        got = m_lacking(lacking, x, t)  # without its check
    except Exception:
        return  # it fails loudly
    expected = right if w.twin else w.reference(lacking, x, t) if w.reference else None
    assert expected is not None, f"{method} ran without {need} and gave a map"
    assert not same_map(got, expected), f"{method} gave the right map without {need}"


def _module_of(method: str, model: str = "shapes_cnn") -> str:
    return type(make_method(method, model)).__module__


@pytest.mark.parametrize("model_name", ["shapes_cnn", "resnet18"])
def test_every_attention_method_is_refused_on_a_cnn(model_name):
    model = make_model(model_name)
    attention = [m for m in METHODS if _module_of(m) == "bench.methods.attention"]
    assert len(attention) == 3, attention
    for name in attention:
        with pytest.raises(Unfit, match=rf"cannot apply to model {model_name} \(\w+\) \(needs"):
            make_method(name, model_name).check(model)


def test_the_cam_family_is_refused_without_feature_maps():
    vit = make_model("vit")  # its CAM layer outputs tokens [B, T, D]
    flat = with_meta(Convs(head="flatten_module"), "flat")
    family = [m for m in METHODS if isinstance(make_method(m, "shapes_cnn"), BaseCAM)]
    cams = [m for m in family if _module_of(m) == "bench.methods.cam"]
    assert len(cams) == 10, cams
    for name in cams:
        method = make_method(name, "vit")
        assert "feature_maps" in method.all_needs()
        assert NEEDS["feature_maps"].test(method, vit) is not None
        with pytest.raises(Unfit):
            method.check(vit)
        method.layer = "flatten"
        with pytest.raises(Unfit, match=r"\(needs feature_maps\): layer=flatten \(Flatten\)"):
            method.check(flat)


def test_vit_gradcam_needs_tokens_not_attention_modules():
    model = with_meta(Tokens(), "tokens")
    x = images(model)
    method = make_method("vit_gradcam", "vit")
    method.layer = "norm"
    method.check(model)
    maps = method(model, x, torch.tensor([0, 1]))
    assert maps.shape == (2, SIDE, SIDE) and torch.isfinite(maps).all() and maps.abs().max() > 0
    with pytest.raises(Unfit, match=r"\(needs attention\): it has no nn.MultiheadAttention"):
        make_method("raw_attention", "vit").check(model)


def test_an_unknown_need_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="needs names no_such_need: not a registered need"):

        class Wrong(Method):
            needs = frozenset({"no_such_need"})


def test_a_wrapper_needs_what_it_wraps():
    from bench.methods.gradient import GuidedBackprop, SmoothGrad

    vit = make_model("vit")
    tunnel = SmoothGrad(GuidedBackprop(), n_samples=2)
    assert tunnel.all_needs() == {"relu_modules"}
    with pytest.raises(
        Unfit, match=r"method SmoothGrad\(GuidedBackprop\) .* \(needs relu_modules\)"
    ):
        tunnel.check(vit)
