"""Infidelity and max-sensitivity against hand computations with the same noise stream."""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import ConfigError
from bench.core.rng import content_keys, keyed_normal, keyed_uniform
from bench.metrics.robustness import (
    _INFIDELITY_STREAM,
    _SENSITIVITY_STREAM,
    Infidelity,
    MaxSensitivity,
)
from tests.metrics._faith_helpers import LinearModel, make_batch, make_ctx

B, H, W = 2, 4, 4


def linear_case():
    g = torch.Generator().manual_seed(0)
    pixel_w = torch.randn(2, 1, H, W, generator=g)
    model = LinearModel(pixel_w.expand(2, 3, H, W))  # every channel of a pixel weighs the same
    images = torch.randn(B, 3, H, W, generator=g)
    return model, make_batch(images, torch.tensor([0, 1])), pixel_w[:, 0]


def test_infidelity_zero_for_the_exact_attribution_of_a_linear_model():
    model, batch, pixel_w = linear_case()
    exact = pixel_w[batch.targets]  # f(x) - f(x - I) = sum_c,p w_p I_cp = I . m exactly
    for normalize in (True, False):
        out = Infidelity(normalize=normalize)(make_ctx(model), batch, exact)
        assert out.scores[""].abs().max() < 1e-6
    wrong = Infidelity(normalize=False)(make_ctx(model), batch, -exact)
    assert (wrong.scores[""] > 1e-3).all()


def test_infidelity_matches_hand_computation():
    model, batch, _ = linear_case()
    maps = torch.rand(B, H, W, generator=torch.Generator().manual_seed(1))
    n, std = 5, 0.1
    ctx = make_ctx(model, chunk_size=64)
    out = Infidelity(noise_std=std, n_perturb_samples=n, normalize=False)(ctx, batch, maps)
    # draw j of image i is keyed by (seed + stream, image i's content, j)
    keys = content_keys(batch.images, ctx.seed + _INFIDELITY_STREAM).repeat_interleave(n)
    draw = torch.arange(n).repeat(B)
    noise = std * keyed_normal(keys, draw, 3 * H * W).view(B * n, 3, H, W)
    x = batch.images.repeat_interleave(n, 0)
    t = batch.targets.repeat_interleave(n, 0)
    with torch.no_grad():
        diff = model(x).gather(1, t[:, None])[:, 0] - model(x - noise).gather(1, t[:, None])[:, 0]
    dot = (noise * maps.repeat_interleave(n, 0)[:, None]).sum((1, 2, 3))
    expected = ((dot - diff) ** 2).view(B, n).mean(1)
    assert torch.allclose(out.scores[""], expected, rtol=1e-4)
    assert not Infidelity.higher_is_better


def channel_sum_method(model, images, targets):
    return images.sum(1)


def test_max_sensitivity_matches_hand_computation_and_is_zero_for_constant_maps():
    model, batch, _ = linear_case()
    n, radius = 4, 0.05
    ctx = make_ctx(model, chunk_size=64, method=channel_sum_method)
    out = MaxSensitivity(radius=radius, n_perturb_samples=n)(ctx, batch, batch.images.sum(1))
    keys = content_keys(batch.images, ctx.seed + _SENSITIVITY_STREAM).repeat_interleave(n)
    u = keyed_uniform(keys, torch.arange(n).repeat(B), 3 * H * W).view(B * n, 3, H, W)
    delta = ((2 * u - 1) * radius).sum(1).flatten(1).norm(dim=1).view(B, n)
    expected = delta.amax(1) / batch.images.sum(1).flatten(1).norm(dim=1)
    assert torch.allclose(out.scores[""], expected, rtol=1e-5)
    const = make_ctx(model, method=lambda m, x, t: torch.ones(x.shape[0], H, W))
    assert MaxSensitivity()(const, batch, torch.ones(B, H, W)).scores[""].abs().max() == 0
    with pytest.raises(ValueError, match="ctx.method"):
        MaxSensitivity()(make_ctx(model), batch, torch.ones(B, H, W))


def test_max_sensitivity_runs_gradient_methods_under_captums_no_grad():
    model, batch, pixel_w = linear_case()

    def gradient(m, x, t):
        x = x.detach().requires_grad_(True)
        m(x).gather(1, t[:, None]).sum().backward()
        return x.grad.sum(1)

    out = MaxSensitivity(n_perturb_samples=2)(
        make_ctx(model, method=gradient), batch, pixel_w[batch.targets]
    )
    assert out.scores[""].abs().max() < 1e-5  # a linear model's gradient does not move


def test_bad_settings_raise_config_errors():
    for make in (
        lambda: Infidelity(noise_std=0),
        lambda: Infidelity(score="prob"),
        lambda: MaxSensitivity(norm="l1"),
        lambda: MaxSensitivity(n_perturb_samples=0),
    ):
        with pytest.raises(ConfigError):
            make()


@pytest.mark.parametrize("metric", ["infidelity", "max_sensitivity"])
def test_an_images_noise_and_score_do_not_depend_on_its_batch_or_the_chunk_size(metric):
    """Each image's draws are keyed by its content: scored alone, beside other images, or with
    captum splitting the draws over several calls (a small chunk size), the score is the same."""
    model, batch, pixel_w = linear_case()
    maps = torch.rand(B, H, W, generator=torch.Generator().manual_seed(1))

    def score(b, m, chunk):
        ctx = make_ctx(model, chunk_size=chunk, method=channel_sum_method)
        if metric == "infidelity":
            return Infidelity(n_perturb_samples=6, normalize=False)(ctx, b, m).scores[""]
        return MaxSensitivity(n_perturb_samples=6)(ctx, b, b.images.sum(1)).scores[""]

    both = score(batch, maps, 64)
    for i in range(B):
        alone = make_batch(batch.images[i : i + 1], batch.targets[i : i + 1])
        torch.testing.assert_close(score(alone, maps[i : i + 1], 64), both[i : i + 1])
        torch.testing.assert_close(score(alone, maps[i : i + 1], 2), both[i : i + 1])
    torch.testing.assert_close(score(batch, maps, 2), both)
    flipped = make_batch(batch.images.flip(0), batch.targets.flip(0))
    torch.testing.assert_close(score(flipped, maps.flip(0), 64), both.flip(0))


def test_max_sensitivity_scores_a_batch_of_one_image():
    """captum expands a one-image batch's inputs over the draws but not its target; the method
    must still get one target per input (this failed on the last, one-image batch of a run)."""
    model, batch, _ = linear_case()
    one = make_batch(batch.images[1:], batch.targets[1:])
    ctx = make_ctx(model, chunk_size=64, method=channel_sum_method)
    alone = MaxSensitivity(n_perturb_samples=3)(ctx, one, one.images.sum(1)).scores[""]
    both = MaxSensitivity(n_perturb_samples=3)(ctx, batch, batch.images.sum(1)).scores[""]
    torch.testing.assert_close(alone, both[1:])
