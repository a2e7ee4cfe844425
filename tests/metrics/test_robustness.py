"""Infidelity and max-sensitivity against hand computations with the same noise stream."""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import ConfigError
from metrics.robustness import _INFIDELITY_STREAM, _SENSITIVITY_STREAM, Infidelity, MaxSensitivity
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
    gen = ctx.generator(_INFIDELITY_STREAM)  # captum perturbs the n-times repeated batch at once
    noise = std * torch.randn((B * n, 3, H, W), generator=gen)
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
    gen = ctx.generator(_SENSITIVITY_STREAM)
    u = torch.rand((B * n, 3, H, W), generator=gen)
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
