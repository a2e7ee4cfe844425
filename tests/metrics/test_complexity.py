"""Complexity (entropy) and sparseness (Gini) against hand values and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bench.core.errors import ConfigError
from bench.metrics.complexity import Complexity, Sparseness
from tests.metrics._loc_helpers import make_batch, make_ctx

CTX = make_ctx()


def run(metric, maps):
    return metric(CTX, make_batch(maps), maps)


def gini_mean_difference(x: np.ndarray) -> float:
    """Gini index as the relative mean absolute difference: sum_ij |x_i - x_j| / (2 N sum x)."""
    x = x.astype(np.float64).ravel()
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * x.sum()))


def test_hand_values_constant_single_pixel_and_two_levels():
    n = 4 * 5
    const = torch.full((1, 4, 5), 0.3)
    one = torch.zeros(1, 4, 5)
    one[0, 2, 3] = 7.0
    two = torch.zeros(1, 4, 5)
    two[0, 0, :2] = 1.0  # two equal pixels: entropy ln 2
    maps = torch.cat([const, one, two])
    c = run(Complexity(), maps).scores[""]
    assert c.tolist() == pytest.approx([math.log(n), 0.0, math.log(2)], abs=1e-6)
    s = run(Sparseness(), maps).scores[""]
    assert s.tolist() == pytest.approx([0.0, 1 - 1 / n, 1 - 2 / n], abs=1e-6)


def test_equal_independent_formulas_on_random_signed_maps():
    maps = torch.randn(6, 7, 9, generator=torch.Generator().manual_seed(0))
    c = run(Complexity(), maps).scores[""]
    s = run(Sparseness(), maps).scores[""]
    cp = run(Complexity(pooling="positive"), maps).scores[""]
    sp = run(Sparseness(pooling="positive"), maps).scores[""]
    for i, m in enumerate(maps.numpy()):
        assert c[i].item() == pytest.approx(stats.entropy(np.abs(m).ravel()), abs=1e-5)
        assert s[i].item() == pytest.approx(gini_mean_difference(np.abs(m)), abs=1e-6)
        assert cp[i].item() == pytest.approx(stats.entropy(np.clip(m, 0, None).ravel()), abs=1e-5)
        assert sp[i].item() == pytest.approx(gini_mean_difference(np.clip(m, 0, None)), abs=1e-6)


def test_directions_scale_invariance_and_ordering():
    assert (
        Complexity().meta()["higher_is_better"] is False
        and Sparseness().meta()["higher_is_better"] is True
    )
    for cls in (Complexity, Sparseness):
        assert cls().meta()["category"] == "complexity" and len(cls().meta()["citation"]) > 20
    g = torch.Generator().manual_seed(1)
    spread = torch.rand(1, 16, 16, generator=g)
    peaked = spread.clone() ** 8  # the same order, more concentrated
    maps = torch.cat([spread, peaked, 1000 * spread])
    c = run(Complexity(), maps).scores[""]
    s = run(Sparseness(), maps).scores[""]
    assert c[1] < c[0] and s[1] > s[0]
    assert c[2].item() == pytest.approx(c[0].item(), abs=1e-6)
    assert s[2].item() == pytest.approx(s[0].item(), abs=1e-6)


def test_degenerate_maps_are_nan_and_flagged():
    maps = torch.zeros(3, 4, 4)
    maps[1] = torch.rand(4, 4, generator=torch.Generator().manual_seed(2)) - 0.5
    maps[2, 0, 0] = float("nan")
    for cls in (Complexity, Sparseness):
        out = run(cls(pooling="none"), maps)
        assert out.flags[""].tolist() == [True, True, True] and out.flag_reason == "degenerate"
        assert all(math.isnan(v) for v in out.scores[""].tolist())
        out = run(cls(), maps)
        assert out.flags[""].tolist() == [True, False, True]
        assert math.isfinite(out.scores[""][1].item())


def test_bad_pooling_is_a_config_error():
    with pytest.raises(ConfigError, match="pooling=l2 .*accepted: abs, none, positive"):
        Complexity(pooling="l2")
