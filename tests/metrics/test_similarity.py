"""Map similarities (metrics/similarity.py) against scikit-image and the reference formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.feature import hog
from skimage.metrics import structural_similarity

from bench.metrics.similarity import hog_features, normalise_abs, normalise_signed, ssim


def test_normalisations_match_the_reference_formulas():
    g = torch.Generator().manual_seed(2)
    m = torch.randn(3, 16, 16, generator=g)
    for i, x in enumerate(m.numpy()):
        ref_abs = np.clip(np.abs(x) / np.percentile(np.abs(x), 99), 0, 1)
        np.testing.assert_allclose(normalise_abs(m)[i].numpy(), ref_abs, rtol=1e-5, atol=1e-6)
        span = abs(np.percentile(x, 99))
        np.testing.assert_allclose(
            normalise_signed(m)[i].numpy(), np.clip(x / span, -1, 1), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            normalise_abs(m, "max")[i].numpy(), np.abs(x) / np.abs(x).max(), rtol=1e-6
        )
        np.testing.assert_allclose(
            normalise_signed(m, "max")[i].numpy(), x / np.abs(x).max(), rtol=1e-6
        )


def test_ssim_matches_skimage_called_directly():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(3, 24, 24, generator=g), torch.rand(3, 24, 24, generator=g)
    got = ssim(a, b, data_range=2.0, sigma=1.5)
    for i in range(3):
        expect = structural_similarity(
            a[i].double().numpy(),
            b[i].double().numpy(),
            data_range=2.0,
            gaussian_weights=True,
            sigma=1.5,
        )
        assert got[i].item() == pytest.approx(expect, abs=1e-12)
    np.testing.assert_allclose(ssim(a, a).numpy(), 1.0, atol=1e-12)
    wang = ssim(a, b, sample_covariance=False)[0].item()
    assert wang == pytest.approx(
        structural_similarity(
            a[0].double().numpy(),
            b[0].double().numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        ),
        abs=1e-12,
    )


def test_hog_features_match_skimage_and_reject_small_maps():
    g = torch.Generator().manual_seed(4)
    m = torch.rand(2, 32, 32, generator=g)
    feats = hog_features(m, cell=8, orientations=9, block=3, block_norm="L2-Hys")
    expect = hog(
        m[1].double().numpy(),
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(3, 3),
        block_norm="L2-Hys",
        feature_vector=True,
    )
    np.testing.assert_allclose(feats[1].numpy(), expect, atol=1e-12)
    with pytest.raises(ValueError, match="hog_cell=16"):
        hog_features(m, cell=16, block=3)
