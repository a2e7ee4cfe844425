"""Every conf/method/*.yaml x {embedded CNN, ResNet-18, tiny ViT}: contract, batching, model left as found.

Which (method, model) pairs are refused follows from what each method declares it needs
(``Method.needs``) and what each test model lacks (:data:`LACKS`, checked against the needs' own
tests); tests/methods/test_needs.py proves the declarations right.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch
from torch import nn

import bench.methods
from bench.core.errors import ConfigError, Unfit
from bench.methods.base import NEEDS
from tests.methods.conftest import METHODS, MODELS, make_images, make_method, make_model

for _module in pkgutil.iter_modules(bench.methods.__path__):  # every need registered
    importlib.import_module(f"bench.methods.{_module.name}")

#: The needs (bench.methods.base.NEEDS) each test model does not meet: facts about the models,
#: checked by test_what_each_model_lacks; a method is unfit for a model when it needs one of them.
LACKS = {
    "shapes_cnn": {"attention", "tokens"},
    "resnet18": {"attention", "tokens", "single_use_nonlinearities", "modules_only"},
    "vit": {
        "feature_maps",
        "linear_head",
        "relu_modules",
        "deeplift_rules",
        "lrp_rules",
        "modules_only",
    },
}


def unfit_needs(method, model_name: str) -> frozenset[str]:
    """The needs of ``method`` (as configured) that the test model ``model_name`` lacks."""
    return method.all_needs() & LACKS[model_name]


#: B x K forward passes over ResNet-18's 512 channels: too slow for the quick suite.
SLOW = {("scorecam", "resnet18"), ("ablationcam", "resnet18")}
#: Methods that never call the model.
MODEL_FREE = {"random", "sobel", "centre_gaussian"}


def _cases():
    for method in METHODS:
        for model in MODELS:
            marks = [pytest.mark.slow] if (method, model) in SLOW else []
            yield pytest.param(method, model, marks=marks, id=f"{method}-{model}")


def snapshot(model: nn.Module) -> dict:
    """Everything a method must leave as it found: modes, flags, hooks, attributes, weights."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [
            (
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
            for m in model.modules()
        ],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    for key in ("training", "requires_grad", "hooks", "attributes"):
        assert after[key] == before[key], key
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


@pytest.fixture(scope="module")
def zoo() -> dict[str, nn.Module]:
    return {name: make_model(name) for name in MODELS}


def test_every_config_is_covered():
    assert len(METHODS) >= 30, METHODS
    declared = set()
    for method in METHODS:
        needs = {name: make_method(method, name).all_needs() for name in MODELS}
        declared |= set().union(*needs.values())
        fits = [name for name in MODELS if not needs[name] & LACKS[name]]
        assert fits, f"{method} applies to none of {list(MODELS)}"
    assert declared == set(NEEDS), set(NEEDS) ^ declared  # no need left undeclared or untested
    for lacks in LACKS.values():
        assert lacks <= set(NEEDS)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_what_each_model_lacks(model_name, zoo):
    """Each need's own test, run with a method that declares it, on each test model."""
    lacks = set()
    for need, required in NEEDS.items():
        method = next(
            m for m in (make_method(name, model_name) for name in METHODS) if need in m.all_needs()
        )
        if required.test(method, zoo[model_name]) is not None:
            lacks.add(need)
    assert lacks == LACKS[model_name]


@pytest.mark.parametrize("method,model_name", list(_cases()))
def test_contract_batching_and_model_state(method, model_name, zoo):
    model = zoo[model_name]
    m = make_method(method, model_name)
    unfit = unfit_needs(m, model_name)
    if unfit:
        with pytest.raises(Unfit) as err:
            m.check(model)
        text = str(err.value)
        assert err.value.need in unfit and f"(needs {err.value.need})" in text, text
        assert type(m).__name__ in text and model_name in text and "\n" not in text, text
        return
    m.check(model)
    model.train()  # the method must run in eval mode and give train mode back
    for p in model.parameters():
        p.requires_grad_(True)
    before = snapshot(model)
    images = make_images(model_name, n=2)
    targets = torch.tensor([0, 1])
    maps = m(model, images, targets)
    assert_unchanged(before, model)
    assert maps.shape == (2, *images.shape[-2:])
    assert maps.dtype == torch.float32 and maps.device == images.device
    assert torch.isfinite(maps).all()
    singles = torch.cat([m(model, images[i : i + 1], targets[i : i + 1]) for i in range(2)])
    scale = maps.abs().max().clamp_min(1e-12)
    torch.testing.assert_close(maps / scale, singles / scale, rtol=0, atol=1e-4)
    assert_unchanged(before, model)
    model.eval()


@pytest.mark.parametrize("method", METHODS)
def test_model_left_unchanged_after_an_error(method, zoo):
    model_name = next(  # the first model it applies to
        n for n in MODELS if not unfit_needs(make_method(method, n), n)
    )
    model = zoo[model_name]
    m = make_method(method, model_name)
    model.train()
    before = snapshot(model)

    def boom(_module, _inputs):
        raise RuntimeError("injected failure")

    handle = model.register_forward_pre_hook(boom)
    try:
        if method in MODEL_FREE:
            m(model, make_images(model_name, n=1), torch.tensor([0]))
        else:
            with pytest.raises(RuntimeError, match="injected failure"):
                m(model, make_images(model_name, n=1), torch.tensor([0]))
    finally:
        handle.remove()
    assert_unchanged(before, model)
    model.eval()


@pytest.mark.parametrize("method", ["gradient", "scorecam", "rise", "integrated_gradients"])
def test_bad_inputs_are_value_errors(method, zoo):
    m = make_method(method, "shapes_cnn")
    model = zoo["shapes_cnn"]
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m(model, torch.zeros(2, 1, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets must be"):
        m(model, torch.zeros(2, 3, 32, 32), torch.tensor([0]))


@pytest.mark.parametrize(
    "key,value,cls",
    [
        ("reduction", "median", "Gradient"),
        ("n_samples", 0, "SmoothGrad"),
        ("p", 1.5, "RISE"),
        ("fill", "zeros", "KernelShap"),
        ("head_fusion", "avg", "RawAttention"),
        ("integration", "simpson", "IntegratedGradients"),
        ("internal_batch_size", 0, "Occlusion"),
        ("discard_ratio", 1.5, "AttentionRollout"),
        ("n_steps", 2.5, "IntegratedGradients"),
        ("window", "big", "Occlusion"),
        ("seed", "abc", "RISE"),
    ],
)
def test_bad_settings_name_key_value_and_choices(key, value, cls):
    import bench.methods.attention as attention
    import bench.methods.gradient as gradient
    import bench.methods.perturbation as perturbation
    import bench.methods.superpixel as superpixel

    klass = next(
        getattr(mod, cls)
        for mod in (gradient, perturbation, superpixel, attention)
        if hasattr(mod, cls)
    )
    with pytest.raises(ConfigError) as err:  # one line for the user, not a traceback
        klass(**{key: value})
    assert key in str(err.value) and str(value) in str(err.value) and "accepted" in str(err.value)
