"""SLIC superpixels on clean and noisy inputs, and the slic_sigma knob of the superpixel methods."""

from __future__ import annotations

import pytest
import torch

from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.data.shapes import ShapesDataset
from bench.methods.superpixel import FeatureAblation, superpixels


@pytest.fixture(scope="module")
def shapes_images() -> torch.Tensor:
    return collate([ShapesDataset("test", size=2)[i] for i in range(2)]).images


def noisy(images: torch.Tensor) -> torch.Tensor:
    """Smooth MPRT's perturbation: Gaussian noise with std 10% of each image's value range."""
    span = images.flatten(1).amax(1) - images.flatten(1).amin(1)
    gen = torch.Generator().manual_seed(0)
    return images + 0.1 * span[:, None, None, None] * torch.randn(images.shape, generator=gen)


def counts(seg: torch.Tensor) -> list[int]:
    return [len(torch.unique(s)) for s in seg]


def test_slic_without_smoothing_collapses_on_noisy_inputs_and_sigma_one_does_not(shapes_images):
    clean = counts(superpixels(shapes_images, 50, 10.0))
    assert min(clean) >= 20, clean
    # the finding behind slic_sigma: Lab colour distances of raw noisy pixels shatter the segments
    # and connectivity enforcement merges the fragments into one or two superpixels
    assert max(counts(superpixels(noisy(shapes_images), 50, 10.0))) <= 3
    assert min(counts(superpixels(noisy(shapes_images), 50, 10.0, sigma=1.0))) >= 40


def test_slic_sigma_reaches_the_segmentation_and_bad_values_are_refused(shapes_images):
    x = noisy(shapes_images)
    assert counts(FeatureAblation(slic_sigma=1.0).segments(x)) == counts(
        superpixels(x, 50, 10.0, 1.0)
    )
    assert counts(FeatureAblation().segments(x)) == counts(superpixels(x, 50, 10.0))
    with pytest.raises(ConfigError, match=r"slic_sigma=-1.0 is not valid; accepted: a number >= 0"):
        FeatureAblation(slic_sigma=-1.0)


def test_captum_kernel_shap_with_one_superpixel_gives_the_exact_shapley_value(
    tiny_cnn, tiny_images
):
    from bench.methods.perturbation import probabilities
    from bench.methods.superpixel import CaptumKernelShap

    method = CaptumKernelShap(n_samples=8, n_segments=4)
    method.segments = lambda images: torch.zeros(
        images.shape[0], *images.shape[-2:], dtype=torch.long
    )
    targets = torch.tensor([0, 1, 2, 0])
    maps = method(tiny_cnn, tiny_images, targets)  # captum alone raises on a NaN Categorical here
    with torch.no_grad():
        p = probabilities(tiny_cnn, tiny_images)[torch.arange(4), targets]
        p0 = probabilities(tiny_cnn, torch.zeros_like(tiny_images))[torch.arange(4), targets]
    expected = (p - p0)[:, None, None].expand(4, 16, 16)
    torch.testing.assert_close(maps, expected)
