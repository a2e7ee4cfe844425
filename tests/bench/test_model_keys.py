"""The keys every model config shares, declared once (bench/models/meta.py) and read by the
config checks from the loaders' ``**shared: Unpack[TypedDict]``."""

from __future__ import annotations

import inspect

import pytest
from omegaconf import OmegaConf
from typing_extensions import Unpack

from bench.config.validate import _parameters, check_node_keys
from bench.core.errors import ConfigError
from bench.models import load_hf, load_module, load_timm, load_torchvision
from bench.models.meta import (
    DEFAULTS,
    CheckpointKeys,
    CheckpointModelKeys,
    HeadKeys,
    ModelKeys,
    model_keys,
)

HEAD = {"num_classes", "cam_layer", "name", "probabilities"}
PREPROCESSING = {"input_size", "resize_size", "mean", "std"}
CHECKPOINT = {"checkpoint", "strip_prefix", "trust_checkpoint"}
#: The keys each loader's config accepted before they were declared once (and must still).
ACCEPTED = {
    load_torchvision: HEAD | PREPROCESSING | CHECKPOINT | {"arch", "weights", "download", "kwargs"},
    load_timm: HEAD | PREPROCESSING | CHECKPOINT | {"arch", "weights", "kwargs"},
    load_hf: HEAD | PREPROCESSING | {"path", "config", "overrides"},
    load_module: HEAD | CHECKPOINT | {"module", "input_size", "mean", "std", "args"},
}


def _keys(typed: type) -> set[str]:
    return set(typed.__required_keys__ | typed.__optional_keys__)


def test_the_shared_keys_are_declared_once_with_their_defaults():
    assert _keys(HeadKeys) == HEAD and _keys(ModelKeys) == HEAD | PREPROCESSING
    assert _keys(CheckpointKeys) == CHECKPOINT
    assert _keys(CheckpointModelKeys) == HEAD | PREPROCESSING | CHECKPOINT == set(DEFAULTS)
    for typed, own in ((HeadKeys, HEAD), (ModelKeys, PREPROCESSING), (CheckpointKeys, CHECKPOINT)):
        assert all(f"\n        {k}: " in typed.__doc__ for k in own), typed  # documented there


@pytest.mark.parametrize("loader", list(ACCEPTED), ids=lambda f: f.__name__)
def test_each_loader_accepts_exactly_its_keys(loader):
    assert _parameters(loader) == (ACCEPTED[loader], False)
    node = OmegaConf.create({"_target_": f"{loader.__module__}.{loader.__name__}", "cam_layr": 1})
    with pytest.raises(
        ConfigError, match=r"^model.cam_layr is not a key of .*Did you mean model.cam_layer\?"
    ):
        check_node_keys("model", node)


def test_the_loaders_take_the_shared_keys_with_their_own_defaults():
    for loader in ACCEPTED:
        assert inspect.signature(loader).parameters["shared"].annotation.startswith("Unpack[")
    assert model_keys(load_torchvision, {}, CheckpointModelKeys) == DEFAULTS
    assert DEFAULTS["cam_layer"] == "auto" and DEFAULTS["probabilities"] == "softmax"
    assert DEFAULTS["trust_checkpoint"] is False and DEFAULTS["name"] is None
    assert model_keys(load_hf, {"name": "x"}, probabilities=None) == {
        **{k: DEFAULTS[k] for k in HEAD | PREPROCESSING},
        "name": "x",
        "probabilities": None,
    }


def test_a_misspelt_keyword_is_a_type_error_as_before():
    with pytest.raises(
        TypeError, match=r"^load_timm\(\) got an unexpected keyword argument 'cam_layr'$"
    ):
        load_timm("resnet18", cam_layr="layer4")
    with pytest.raises(
        TypeError, match=r"^load_module\(\) got an unexpected keyword argument 'resize_size'$"
    ):
        load_module("tests.bench.test_models.TinyNet", [8, 8], [0.5] * 3, [0.5] * 3, resize_size=9)
    with pytest.raises(
        TypeError, match=r"^load_hf\(\) got an unexpected keyword argument 'checkpoint'$"
    ):
        load_hf(config="vit", checkpoint="x.pt")


def test_an_unpack_annotation_is_read_and_an_unresolvable_one_takes_any_keyword():
    def typed(a: int, **kw: Unpack[HeadKeys]) -> None:
        """Its ``**kw`` are the head keys."""

    def loose(a: int, **kw: Unpack[Missing]) -> None:  # noqa: F821 - unresolvable on purpose
        """Its ``**kw`` names a TypedDict that does not exist: any keyword, as a bare one."""

    def bare(a: int, **kw) -> None:
        """A bare ``**kw``."""

    assert _parameters(typed) == ({"a"} | HEAD, False)
    assert _parameters(loose) == ({"a"}, True) == _parameters(bare)
