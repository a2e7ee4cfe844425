"""Every setting of every conf/method/*.yaml reaches the map and the attribution cache's key (issue 28).

Generated from the configs: each key of each composed method node (a wrapped method's keys too)
is changed to a value derived from it (tests/_settings_helpers.py) and the map must change; the
two configs must never share a cache key. The batch knobs (:data:`BATCH_KNOBS`) must leave the key
alone; that they leave the map alone is tests/methods/test_batch_knobs.py's job (checked here: a
method has at most one, the one that file tests). A key added to a YAML later is enumerated here
too: it must change the map (or get a value in OVERRIDES, or a reason in EXCLUDED), so the test
keeps up with the configs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from bench.api import compose
from bench.config.overrides import options
from bench.engine.cache import MapCache, job_spec
from tests._settings_helpers import (
    Path,
    Together,
    accepts,
    candidates,
    dotted,
    get,
    leaves,
    same_map,
    with_values,
)
from tests.methods.conftest import FAST, MODELS, make_images, make_model

METHODS = options("method")
#: The batch knobs: how many inputs go through the model at once, never what the map is (the
#: batching contract). Spelled out here, not read from bench.engine.cache.CHUNK_KEYS, which the cache-key
#: test checks: a map-changing key slipped into CHUNK_KEYS must fail it, not be excused by it.
BATCH_KNOBS = frozenset({"batch_size", "internal_batch_size"})
#: The models a method is tried on, in order; the first it applies to is used.
TRY_MODELS = ("shapes_cnn", "vit")
#: A second layer with feature maps (tokens for the ViT) of each test model.
OTHER_LAYER = {"shapes_cnn": "features.2", "vit": "encoder.layers.encoder_layer_0.ln_1"}
#: A layer of each test model whose activations have both signs.
SIGNED_LAYER = {"shapes_cnn": "features.2.0", "vit": MODELS["vit"][2]}

#: Values where none can be derived from the YAML's (or a derived one is too small a change to
#: show), by (method or "*", dotted key); a callable gets the case (for per-model values).
OVERRIDES: dict[tuple[str, str], list[Any] | Callable[[MethodCase], list[Any]]] = {
    # a module name: another layer of the same model
    ("*", "layer"): lambda case: [OTHER_LAYER[case.model_name]],
    # null = the model's last nn.Linear, here the test model's `aux` head; "fc" is the one it uses
    ("cam", "head"): ["fc"],
    # the stabiliser: x2 of 1e-9 changes relevances by ~1e-9, below any tolerance
    ("lrp", "epsilon"): [0.1],
    # the wrapped method: another class
    ("smoothgrad", "method._target_"): ["bench.methods.gradient.InputXGradient"],
    # (without VarGrad's `abs: false`, which only Gradient takes)
    ("vargrad", "method._target_"): [
        Together(
            {
                "method": {
                    "_target_": "bench.methods.gradient.InputXGradient",
                    "reduction": "max_abs",
                }
            }
        )
    ],
}

#: Keys whose effect needs another setting, varied under it (dotted key -> value, or a callable
#: of the case); the YAML's value of the key itself is then compared with the alternative.
ENABLE: dict[tuple[str, str], dict[str, Any]] = {
    # the ReLU of a CAM can only remove negative values: a layer with signed activations (the
    # third block's convolution, before its batch norm and ReLU); on the last block's ReLU output
    # (the CAM layer) the maps of Grad-CAM++, LayerCAM and Ablation-CAM come out positive anyway
    ("*", "relu"): {"layer": lambda case: SIGNED_LAYER[case.model_name]},
    # max_abs pooling drops the sign that `abs` keeps or not
    ("gradient", "abs"): {"reduction": "sum"},
}

#: Keys that do not change the map, each with its reason. Where values can be derived, the test
#: checks that none of them changes the map (so an entry cannot outlive its reason).
EXCLUDED: dict[tuple[str, str], str] = {
    # BatchedKernelShap reproduces shap's blur masker on the device, not its OpenCV inpainting
    ("kernel_shap_batched", "fill"): "blur is its only accepted value",
}


@dataclass
class MethodCase:
    name: str
    model_name: str
    model: nn.Module
    cfg: DictConfig  # the whole job config, composed and resolved
    node: dict  # cfg.method as a plain container, with the fast settings
    images: Tensor
    targets: Tensor

    def build(self, node: dict) -> Any:
        return instantiate(node)

    def maps(self, node: dict) -> Tensor:
        return self.build(node)(self.model, self.images, self.targets)


@functools.cache
def settings_model(name: str) -> nn.Module:
    """The model a method is tried on: the embedded CNN as trained (a random one is nearly blind
    to its input after global pooling, which leaves LIME's Lasso nothing to fit, and positively
    homogeneous, so integrated gradients would not depend on ``n_steps``), or the tiny random ViT
    of tests/methods/conftest.py."""
    if name != "shapes_cnn":
        return make_model(name)
    model = instantiate(compose().model)
    # A second linear head, unused by forward, for CAM's `head` key (null = the last nn.Linear,
    # this one), drawn from its own generator (the same whatever ran before).
    model.aux = nn.Linear(model.fc.in_features, model.fc.out_features)
    with torch.no_grad():
        model.aux.weight.normal_(generator=torch.Generator().manual_seed(0))
    return model


@functools.cache
def method_case(name: str) -> MethodCase:
    """The method composed for the first test model it applies to, with the fast settings."""
    for model_name in TRY_MODELS:
        cfg = compose(f"method={name}", f"model.cam_layer={MODELS[model_name][2]}")
        node = OmegaConf.to_container(cfg.method)
        node.update({k: v for k, v in FAST.items() if k in node})
        try:
            instantiate(node).check(settings_model(model_name))
        except ValueError:  # a ConfigError: the method does not apply to this model
            continue
        model = settings_model(model_name)
        images = make_images(model_name, n=2)
        with torch.no_grad():
            targets = model(images).argmax(1)  # the classes whose scores respond to the input
        return MethodCase(name, model_name, model, cfg, node, images, targets)
    raise AssertionError(f"method {name} applies to none of {TRY_MODELS}")


def lookup(table: dict, name: str, path: Path) -> Any:
    """The entry of ``table`` for ``name``'s key ``path``, or for that key in every method."""
    for key in ((name, dotted(path)), ("*", dotted(path))):
        if key in table:
            return table[key]
    return None


def enabled(case: MethodCase, path: Path) -> dict:
    """The case's node with what ``path`` needs to show (:data:`ENABLE`)."""
    need = lookup(ENABLE, case.name, path) or {}
    return with_values(
        case.node,
        {tuple(k.split(".")): v(case) if callable(v) else v for k, v in need.items()},
    )


@functools.cache
def base_maps(name: str, path: Path) -> Tensor:
    case = method_case(name)
    return case.maps(enabled(case, path))


def values_for(case: MethodCase, path: Path) -> list[Any]:
    """The override for ``path`` if there is one, else values derived from the YAML's."""
    found = lookup(OVERRIDES, case.name, path)
    if found is not None:
        return found(case) if callable(found) else list(found)
    return candidates(case.build, case.node, path)


def is_knob(path: Path) -> bool:
    return path[-1] in BATCH_KNOBS


def _keys() -> list:
    out = []
    for name in METHODS:
        for path in leaves(method_case(name).node):
            out.append(pytest.param(name, path, id=f"{name}-{dotted(path)}"))
    return out


def test_the_tables_name_only_existing_keys():
    for table in (OVERRIDES, ENABLE, EXCLUDED):
        for name, key in table:
            names = METHODS if name == "*" else [name]
            assert name == "*" or name in METHODS, f"{name} is not a method"
            assert any(tuple(key.split(".")) in set(leaves(method_case(n).node)) for n in names), (
                f"{name}.{key} is in no config: remove it from the table"
            )
    assert not set(OVERRIDES) & set(EXCLUDED) and not set(ENABLE) & set(EXCLUDED)


@pytest.mark.parametrize("name,path", _keys())
def test_every_setting_changes_the_map(name, path):
    case = method_case(name)
    key = dotted(path)
    if is_knob(path):  # leaves the map alone: tests/methods/test_batch_knobs.py checks that for
        # the one knob of each method that has one (a second would escape it)
        assert [p for p in leaves(case.node) if is_knob(p)] == [path], name
        return
    base, node = base_maps(name, path), enabled(case, path)
    if (name, key) in EXCLUDED:
        for value in candidates(case.build, node, path):
            out = case.maps(with_values(node, {path: value}))
            assert same_map(base, out), f"{name}.{key}={value!r} changes the map: not excluded"
        return
    values = values_for(case, path)
    assert values, (
        f"conf/method/{name}.yaml: no value to change {key}={get(case.node, path)!r} to; add "
        "one to OVERRIDES, or the key to EXCLUDED with the reason it cannot change the map"
    )
    tried = []
    for value in values:
        other = with_values(node, {path: value})
        assert accepts(case.build, other), f"{name}: {key}={value!r} is refused"
        try:
            maps = case.maps(other)
        except Exception as err:  # noqa: BLE001 - a value the class accepts but cannot run
            tried.append(f"{value!r} (fails: {err})")
            continue
        if not same_map(base, maps):
            return
        tried.append(repr(value))
    pytest.fail(f"{name}: {key}={get(node, path)!r} -> any of {tried} gives the same map")


def cache_key(case: MethodCase, node: dict) -> str:
    """The key of one map (image ``img0``, class 0) of a job running ``node`` as its method: the
    job-wide part from :func:`bench.engine.cache.job_spec`, with the test model."""
    cfg = case.cfg.copy()
    with open_dict(cfg):
        cfg.method = OmegaConf.create(node)
    cache = MapCache(".", mode="off")
    cache.start(job_spec(cfg, case.model, case.model.bench_meta.to_dict(), torch.device("cpu")))
    return cache.keys(["img0"], ["0" * 64], torch.tensor([0]))[0]


@pytest.mark.parametrize("name", METHODS)
def test_every_setting_but_the_knobs_changes_the_cache_key(name):
    """Two configs differing in any setting never share a key (a run with ``n_samples=16`` never
    reads the maps of ``n_samples=2``); a batch knob never changes it (its maps are the same)."""
    case = method_case(name)
    base = cache_key(case, case.node)
    assert cache_key(case, case.node) == base
    for path in leaves(case.node):
        key = dotted(path)
        if is_knob(path):
            for value in (1, 5, None, "auto"):
                other = cache_key(case, with_values(case.node, {path: value}))
                assert other == base, f"{name}: {key}={value!r} changes the cache key"
            continue
        values = values_for(case, path)
        if not values:
            assert (name, key) in EXCLUDED, f"{name}.{key}: no value to try"
            continue
        for value in values:
            other = cache_key(case, with_values(case.node, {path: value}))
            assert other != base, f"{name}: {key}={value!r} shares the YAML value's cache key"


def test_no_two_method_files_share_a_cache_key():
    keys = {}
    for name in METHODS:
        case = method_case(name)
        keys.setdefault(cache_key(case, case.node), []).append(name)
    assert all(len(v) == 1 for v in keys.values()), [v for v in keys.values() if len(v) > 1]
