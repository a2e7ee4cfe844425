"""The superpixel family's config keys: declared once on the bases (``Superpixel``,
``SampledSuperpixel``, ``CaptumSuperpixel``, ``PackageSuperpixel``), each class takes exactly its
keys with their defaults, the shared checks name the key, and the batch knob keeps its family's name.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from bench.config.validate import check_node_keys
from bench.core.errors import ConfigError
from bench.methods import superpixel as sp
from tests.test_configs import constructor_keys

SLIC = {"n_segments": 50, "compactness": 10.0, "slic_sigma": 0.0}
SAMPLED = {"n_samples": 1000, "seed": 0}
CAPTUM = {**SLIC, "fill": 0.0, "internal_batch_size": "auto"}
LIME = {**SLIC, **SAMPLED, "kernel_width": 0.25, "hide_color": 0.0, "batch_size": "auto"}
SHAP = {**SLIC, **SAMPLED, "fill": "blur", "blur_size": 16, "batch_size": "auto"}
#: Every concrete class of the family: its config keys and their defaults.
KEYS = {
    sp.FeatureAblation: CAPTUM,
    sp.CaptumLime: {**CAPTUM, **SAMPLED},
    sp.CaptumKernelShap: {**CAPTUM, **SAMPLED},
    sp.Lime: LIME,
    sp.BatchedLime: LIME,
    sp.KernelShap: SHAP,
    sp.BatchedKernelShap: SHAP,
}
CLASSES = pytest.mark.parametrize("cls", list(KEYS), ids=lambda c: c.__name__)


def node(cls: type, **keys: object):
    return OmegaConf.create({"_target_": f"{cls.__module__}.{cls.__name__}", **keys})


@CLASSES
def test_each_class_takes_exactly_its_keys_with_their_defaults(cls):
    expected = KEYS[cls]
    assert set(constructor_keys(cls)) == set(expected)
    method = cls()
    assert {k: getattr(method, k) for k in expected} == expected
    check_node_keys("method", node(cls, **expected))  # every key accepted by the config check
    with pytest.raises(ConfigError, match="is not a key of"):
        check_node_keys("method", node(cls, batch=8))  # the base's positional knob is no key
    assert cls(**expected).__dict__ == method.__dict__


@pytest.mark.parametrize("key", ["n_samples", "seed"])
def test_feature_ablation_draws_nothing_so_takes_no_sampling_key(key):
    with pytest.raises(ConfigError, match=f"method.{key} is not a key of"):
        check_node_keys("method", node(sp.FeatureAblation, **{key: 1}))
    with pytest.raises(TypeError):
        sp.FeatureAblation(**{key: 1})


@CLASSES
def test_the_shared_checks_name_the_key(cls):
    with pytest.raises(ConfigError, match=r"n_segments=0 is not valid; accepted: an integer >= 1"):
        cls(n_segments=0)
    with pytest.raises(ConfigError, match=r"compactness=0 is not valid"):
        cls(compactness=0)
    knob = "internal_batch_size" if "internal_batch_size" in KEYS[cls] else "batch_size"
    assert cls.knob == knob
    with pytest.raises(ConfigError, match=rf"{knob}=0 is not valid; accepted: auto, null"):
        cls(**{knob: 0})
    assert getattr(cls(**{knob: 7}), knob) == 7
    if "n_samples" in KEYS[cls]:
        with pytest.raises(
            ConfigError, match=r"n_samples=0 is not valid; accepted: an integer >= 1"
        ):
            cls(n_samples=0)
        with pytest.raises(ConfigError, match=r"seed='x' is not valid; accepted: an integer"):
            cls(seed="x")
