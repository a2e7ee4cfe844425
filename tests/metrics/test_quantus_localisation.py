"""Agreement with Quantus 0.6 (a test-only peer) on the same maps, configured the same way.

Protocol differences, each pinned by a test below rather than hidden:
- Quantus' PointingGame has no tolerance and a per-sample mean: it equals ours with
  ``tolerance: 0, strict: false`` except for ties (Quantus hits when ANY tied maximum lies in the
  mask; TorchRay and we take the first maximum in row-major order).
- Quantus' RelevanceRankAccuracy breaks ties with numpy's unstable argsort; ours is explicit.
- Quantus' Complexity adds 1e-12 inside the log and Sparseness adds 1e-7 to every value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.metrics.complexity import Complexity, Sparseness
from bench.metrics.localisation import (
    EnergyPointingGame,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
)
from tests.metrics._loc_helpers import make_batch, make_ctx

quantus = pytest.importorskip("quantus")

CTX = make_ctx()
B, H, W = 32, 12, 16


def cases(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed continuous maps (no ties) and masks that are unions of two random rectangles."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(B, H, W, generator=g)
    masks = torch.zeros(B, H, W, dtype=torch.bool)
    for i in range(B):
        for _ in range(2):
            y0, x0 = (
                int(torch.randint(0, H - 3, (1,), generator=g)),
                int(torch.randint(0, W - 3, (1,), generator=g)),
            )
            dy, dx = (
                int(torch.randint(1, 6, (1,), generator=g)),
                int(torch.randint(1, 8, (1,), generator=g)),
            )
            masks[i, y0 : y0 + dy, x0 : x0 + dx] = True
    return maps, masks


def q(cls, maps: torch.Tensor, masks: torch.Tensor, **kw) -> np.ndarray:
    metric = cls(disable_warnings=True, **kw)
    x = np.zeros((len(maps), 3, H, W), dtype=np.float32)
    out = metric(
        model=None,
        x_batch=x,
        y_batch=np.zeros(len(maps), dtype=int),
        a_batch=maps[:, None].numpy().copy(),
        s_batch=masks[:, None].numpy().astype(float),
        channel_first=True,
    )
    return np.asarray(out, dtype=np.float64)


def ours(metric, maps, masks) -> np.ndarray:
    return metric(CTX, make_batch(maps, masks=masks), maps).scores[""].double().numpy()


def test_pointing_game_agrees_with_quantus_without_tolerance():
    maps, masks = cases(0)
    got = ours(PointingGame(tolerance=0, strict=False, region="masks"), maps, masks)
    want = q(quantus.PointingGame, maps, masks, abs=False, normalise=False)
    np.testing.assert_array_equal(got, want)
    assert 0 < want.sum() < B and abs(got.mean() - want.mean()) < 1e-4
    # Quantus' default pre-processing (normalise by max) does not move the maximum
    np.testing.assert_array_equal(got, q(quantus.PointingGame, maps, masks))


def test_pointing_game_ties_are_the_documented_difference():
    m = torch.zeros(1, H, W)
    m[0, 0, 0] = m[0, 5, 5] = 1.0  # two tied maxima: the first lies outside the mask
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    mask[0, 4:7, 4:7] = True
    assert ours(PointingGame(tolerance=0, strict=False, region="masks"), m, mask).tolist() == [0.0]
    assert q(quantus.PointingGame, m, mask, abs=False, normalise=False).tolist() == [1.0]


@pytest.mark.parametrize("pooling, q_abs", [("abs", True), ("none", False)])
def test_relevance_mass_and_attribution_localisation_agree_with_quantus(pooling, q_abs):
    maps, masks = cases(1)
    if pooling == "none":
        maps = maps.abs() + 0.01
    got = ours(RelevanceMassAccuracy(pooling=pooling), maps, masks)
    np.testing.assert_allclose(
        got, q(quantus.RelevanceMassAccuracy, maps, masks, abs=q_abs, normalise=False), atol=1e-6
    )
    # Quantus' AttributionLocalisation (Kohlbrenner 2020) is the energy pointing game on masks
    got = ours(EnergyPointingGame(region="masks", pooling=pooling), maps, masks)
    np.testing.assert_allclose(
        got, q(quantus.AttributionLocalisation, maps, masks, abs=q_abs, normalise=False), atol=1e-6
    )


def test_relevance_rank_agrees_with_quantus_on_tie_free_maps():
    maps, masks = cases(2)
    got = ours(RelevanceRankAccuracy(pooling="abs"), maps, masks)
    want = q(quantus.RelevanceRankAccuracy, maps, masks, abs=True, normalise=False)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert want.std() > 0.05  # the cases discriminate


def test_complexity_and_sparseness_agree_with_quantus():
    maps, masks = cases(3)
    got_c = ours(Complexity(), maps, masks)
    got_s = ours(Sparseness(), maps, masks)
    np.testing.assert_allclose(
        got_c, q(quantus.Complexity, maps, masks, abs=True, normalise=False), atol=1e-4
    )
    np.testing.assert_allclose(
        got_s, q(quantus.Sparseness, maps, masks, abs=True, normalise=False), atol=1e-4
    )
    # with Quantus' default normalise-by-max too (both are scale invariant)
    np.testing.assert_allclose(got_c, q(quantus.Complexity, maps, masks), atol=1e-4)
    np.testing.assert_allclose(got_s, q(quantus.Sparseness, maps, masks), atol=1e-4)
