"""The methods' batch knobs (``batch_size`` / ``internal_batch_size``): ``auto`` by default, and no
value of them changes a map, a cache key or a job's config hash (issue 14: a memory bound instead
of a magic chunk)."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from bench.core.context import AUTO_CAP
from bench.core.errors import ConfigError
from bench.engine.cache import CHUNK_KEYS, without_chunk_keys
from bench.engine.run import config_hash
from bench.methods.base import batch_limit, check_batch_size
from bench.methods.cam import ScoreCAM
from tests.methods.conftest import (
    CONF,
    METHODS,
    make_images,
    make_model,
    method_config,
)

#: Every method whose config has a batch knob, and the knob.
KNOBS = {
    m: next(k for k in ("batch_size", "internal_batch_size") if k in method_config(m, "shapes_cnn"))
    for m in METHODS
    if any(k in method_config(m, "shapes_cnn") for k in CHUNK_KEYS)
}


def test_every_chunked_method_is_covered_and_defaults_to_auto():
    assert len(KNOBS) >= 15, KNOBS
    for method, key in KNOBS.items():
        assert method_config(method, "shapes_cnn", fast=False)[key] == "auto", method


@pytest.mark.parametrize("method", sorted(KNOBS))
def test_the_knob_never_changes_a_map(method):
    """auto (64 on this CPU), 5 and null (all at once) give the same maps: 2 images, so 5 splits
    every method's pairs into several uneven chunks."""
    model = make_model("shapes_cnn")
    images, targets = make_images("shapes_cnn", n=2), torch.tensor([0, 3])
    key = KNOBS[method]
    maps = {}
    for value in ("auto", 5, None):
        node = method_config(method, "shapes_cnn")  # the fast settings, then the knob
        node[key] = value
        m = instantiate(node)
        assert getattr(m, key) == value
        maps[value] = m(model, images, targets)
    scale = maps["auto"].abs().max().clamp_min(1e-12)
    for value in (5, None):
        torch.testing.assert_close(maps[value] / scale, maps["auto"] / scale, rtol=0, atol=1e-5)


def test_auto_is_the_device_cap_and_bad_values_are_named():
    assert batch_limit("auto", "cpu") == AUTO_CAP["cpu"] == 64
    assert batch_limit(7, "cpu") == 7 and batch_limit(None, "cpu") is None
    assert check_batch_size("internal_batch_size", "auto") == "auto"
    for bad in ("big", 0, -3, 2.5, True):
        with pytest.raises(ConfigError) as err:
            check_batch_size("internal_batch_size", bad)
        text = str(err.value)
        assert f"internal_batch_size={bad!r}" in text and "auto" in text, text
    with pytest.raises(ConfigError, match="batch_size='lots'.*auto"):
        ScoreCAM(layer=None, batch_size="lots")


def test_knobs_leave_the_config_hash_and_the_cache_key():
    def cfg(*overrides):
        with initialize_config_dir(config_dir=str(CONF.resolve()), version_base=None):
            return compose(config_name="config", overrides=list(overrides))

    base = cfg("method=smoothgrad")
    for overrides in (
        ["method.internal_batch_size=8"],
        ["method.internal_batch_size=null"],
        ["method=smoothgrad", "+method.method.internal_batch_size=4"],
    ):
        other = cfg("method=smoothgrad", *overrides)
        assert config_hash(other) == config_hash(base), overrides
    assert config_hash(cfg("method=smoothgrad", "method.n_samples=7")) != config_hash(base)
    node = {"a": 1, "batch_size": 3, "method": {"internal_batch_size": 2, "b": [1]}}
    assert without_chunk_keys(node) == {"a": 1, "method": {"b": [1]}}
    with open_dict(base):
        base.method.internal_batch_size = 8  # a config edited in code, not by an override
    assert config_hash(base) == config_hash(cfg("method=smoothgrad"))
