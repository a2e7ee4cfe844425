"""Ranks and correlations (bench/core/ranking.py) against scipy."""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch

from bench.core.ranking import average_ranks, pearson, spearman

# ------------------------------------------------------------------ similarity functions


def test_rank_and_spearman_match_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 300, generator=g)
    b = torch.randn(4, 300, generator=g)
    a[:, :80] = 0.0  # a big tie group
    b[:, 40:120] = 1.5
    a[1, 200:] = a[1, 0:100]  # repeated values
    expect_rank = np.stack([scipy.stats.rankdata(x) for x in a.numpy()])
    np.testing.assert_array_equal(average_ranks(a).numpy(), expect_rank)
    expect = [scipy.stats.spearmanr(x, y)[0] for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(spearman(a, b).numpy(), expect, atol=1e-12)
    np.testing.assert_allclose(spearman(a, a).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(spearman(a, -a).numpy(), -1.0, atol=1e-12)
    const = torch.ones(2, 300)
    assert spearman(const, b[:2]).isnan().all()


def test_pearson_matches_scipy():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 50, generator=g), torch.randn(3, 50, generator=g)
    expect = [scipy.stats.pearsonr(x, y)[0] for x, y in zip(a.double().numpy(), b.double().numpy())]
    np.testing.assert_allclose(pearson(a, b).numpy(), expect, atol=1e-12)
