"""Value oracles for every method in conf/method/ (issue 28: tests that catch wrong numbers).

Each method is checked against the strongest reference there is for it: the reference
implementation called directly on the same inputs (captum, pytorch-grad-cam, lime, shap), a loop
of the paper's estimator on the method's own random draws (RISE's masks, the surrogates'
samples), a model with a closed-form answer (linear, quadratic, one-hidden-layer ReLU networks,
attention set by hand), or a property a wrong implementation breaks (IG's completeness, the
noise wrappers' spread). :data:`ORACLES` lists, for every config, the tests that check its values
(these and the older ones in test_references.py and test_batched_surrogates.py).
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.rng import content_keys, per_image_seeds
from bench.methods.attention import AttentionRollout, RawAttention, ViTGradCAM
from bench.methods.baselines import CentreGaussian, Random, Sobel
from bench.methods.cam import (
    CAM,
    AblationCAM,
    ActivationMap,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from bench.methods.gradient import (
    INTEGRATIONS,
    LRP,
    Deconvolution,
    DeepLift,
    Gradient,
    GradientShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    SmoothGrad,
    VarGrad,
)
from bench.methods.perturbation import RISE, Occlusion
from bench.methods.superpixel import (
    BatchedKernelShap,
    BatchedLime,
    CaptumKernelShap,
    CaptumLime,
    FeatureAblation,
    KernelShap,
    Lime,
)
from tests.methods.conftest import METHODS, make_images, make_model

#: config name -> the tests that check its values ("module::test" for tests in other files).
ORACLES = {
    "ablationcam": [
        "test_cam_family_equals_the_package_before_its_scaling",
        "test_references::test_cam_family_agrees_with_grad_cam_package",
    ],
    "activation_map": ["test_activation_map_is_the_layers_output_pooled_over_channels"],
    "attention_rollout": ["test_attention_rollout_of_hand_set_attention"],
    "cam": [
        "test_cam_is_the_heads_row_times_the_feature_maps",
        "test_references::test_cam_family_agrees_with_grad_cam_package",
    ],
    "captum_kernel_shap": [
        "test_captum_surrogates_are_captum_on_the_same_seed_and_superpixels",
        "test_superpixels::test_captum_kernel_shap_with_one_superpixel_gives_the_exact_shapley_value",
    ],
    "captum_lime": ["test_captum_surrogates_are_captum_on_the_same_seed_and_superpixels"],
    "centre_gaussian": ["test_centre_gaussian_is_the_stated_gaussian"],
    "deconvnet": [
        "test_relu_backward_rules_closed_form_on_a_relu_network",
        "test_gradient_family_equals_captum_called_directly",
    ],
    "deeplift": [
        "test_deeplift_rescale_rule_closed_form_on_a_relu_network",
        "test_gradient_family_equals_captum_called_directly",
        "test_references::test_deeplift_summation_to_delta",
    ],
    "eigencam": [
        "test_eigencam_is_the_first_principal_component_projection",
        "test_references::test_eigencam_agrees_with_the_package_projection_up_to_sign",
    ],
    "feature_ablation": ["test_feature_ablation_is_the_probability_drop_of_each_superpixel"],
    "gradcam": [
        "test_cam_family_equals_the_package_before_its_scaling",
        "test_cam_is_the_heads_row_times_the_feature_maps",
        "test_references::test_cam_family_agrees_on_resnet18",
    ],
    "gradcam_pp": [
        "test_cam_family_equals_the_package_before_its_scaling",
        "test_references::test_cam_family_agrees_on_resnet18",
    ],
    "gradient": [
        "test_gradients_of_a_linear_model",
        "test_relu_backward_rules_closed_form_on_a_relu_network",
        "test_gradient_family_equals_captum_called_directly",
    ],
    "gradient_shap": [
        "test_gradient_shap_of_a_linear_model_with_a_fixed_baseline_is_exact",
        "test_gradient_shap_noise_on_a_linear_model_has_the_stated_spread",
        "test_gradient_shap_on_a_quadratic_model_is_one_path_point_per_draw",
    ],
    "guided_backprop": [
        "test_relu_backward_rules_closed_form_on_a_relu_network",
        "test_gradient_family_equals_captum_called_directly",
    ],
    "guided_gradcam": ["test_guided_gradcam_is_guided_backprop_times_the_upsampled_gradcam"],
    "input_x_gradient": [
        "test_gradients_of_a_linear_model",
        "test_relu_backward_rules_closed_form_on_a_relu_network",
        "test_gradient_family_equals_captum_called_directly",
    ],
    "integrated_gradients": [
        "test_integrated_gradients_of_a_linear_model_is_exact_for_any_step_count",
        "test_integrated_gradients_equals_captum_with_the_same_baseline_steps_and_rule",
        "test_integrated_gradients_completeness_to_1e4",
        "test_references::test_integrated_gradients_completeness",
    ],
    "kernel_shap": [
        "test_kernel_shap_is_the_exact_shapley_value_when_every_coalition_is_enumerated",
        "test_batched_surrogates::test_batched_kernel_shap_equals_the_shap_wrapper_when_every_coalition_is_enumerated",
    ],
    "kernel_shap_batched": [
        "test_kernel_shap_is_the_exact_shapley_value_when_every_coalition_is_enumerated",
        "test_batched_surrogates::test_kernel_shap_fit_equals_shaps_phi_on_shaps_samples",
        "test_batched_surrogates::test_one_superpixel_gets_the_exact_shapley_value",
    ],
    "layercam": [
        "test_cam_family_equals_the_package_before_its_scaling",
        "test_references::test_cam_family_agrees_on_resnet18",
    ],
    "lime": ["test_lime_wrapper_is_the_lime_package_on_the_same_samples"],
    "lime_batched": [
        "test_batched_lime_is_limes_regression_on_its_own_samples",
        "test_batched_surrogates::test_lime_weights_and_ridge_equal_limes_on_limes_samples",
    ],
    "lrp": [
        "test_lrp_epsilon_rule_closed_form_on_a_relu_network",
        "test_gradient_family_equals_captum_called_directly",
    ],
    "occlusion": ["test_occlusion_is_the_mean_logit_drop_of_the_windows_covering_a_pixel"],
    "random": ["test_random_maps_are_uniform_independent_and_blind_to_the_model"],
    "raw_attention": ["test_raw_attention_of_hand_set_attention"],
    "rise": ["test_rise_is_the_papers_estimator_on_its_own_masks"],
    "scorecam": ["test_cam_family_equals_the_package_before_its_scaling"],
    "smoothgrad": [
        "test_noise_wrappers_of_a_linear_model",
        "test_smoothgrad_and_vargrad_noise_has_the_stated_sigma",
        "test_references::test_smoothgrad_without_noise_is_the_wrapped_method",
    ],
    "sobel": ["test_sobel_equals_scipy", "test_sobel_of_one_bright_square"],
    "vargrad": [
        "test_noise_wrappers_of_a_linear_model",
        "test_smoothgrad_and_vargrad_noise_has_the_stated_sigma",
        "test_references::test_smoothgrad_without_noise_is_the_wrapped_method",
    ],
    "vit_gradcam": ["test_vit_gradcam_equals_the_package_before_its_scaling"],
    "xgradcam": [
        "test_cam_family_equals_the_package_before_its_scaling",
        "test_references::test_cam_family_agrees_on_resnet18",
    ],
}


def test_every_method_config_has_a_value_oracle():
    import importlib

    assert set(ORACLES) == set(METHODS), set(ORACLES) ^ set(METHODS)
    for tests in ORACLES.values():
        for name in tests:
            module, _, test = name.rpartition("::")
            where = importlib.import_module(f"tests.methods.{module}") if module else None
            assert callable(getattr(where or sys.modules[__name__], test, None)), name


# --------------------------------------------------------------------------------- models


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal up to ``rtol`` of the expected map's largest magnitude (float32 rounding)."""
    expected = torch.as_tensor(expected).to(actual)
    scale = float(expected.abs().max())
    assert scale > 0, "a zero reference checks nothing"
    torch.testing.assert_close(actual, expected, rtol=0, atol=rtol * scale)


class LinearNet(nn.Module):
    """``logits = W vec(x) + b``: every gradient method has a closed form."""

    def __init__(self, side: int, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.side = side
        self.fc = nn.Linear(3 * side * side, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))

    def w(self, targets: torch.Tensor) -> torch.Tensor:
        """The target rows of ``W`` as images ``[B, 3, side, side]``."""
        return self.fc.weight.detach()[targets].view(len(targets), 3, self.side, self.side)


class ReLUNet(nn.Module):
    """``fc2(relu(fc1(vec x)))`` with biases: each backward rule has a closed form."""

    def __init__(self, side: int, hidden: int = 12, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc1 = nn.Linear(3 * side * side, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x.flatten(1))))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``z = fc1(vec x)`` ``[B, hidden]``."""
        with torch.no_grad():
            return self.fc1(x.flatten(1))

    def back(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        """``W1^T signal`` as images like ``x``."""
        return (signal @ self.fc1.weight.detach()).view_as(x)


class QuadraticNet(nn.Module):
    """``logit_k = sum(a_k x^2) / 2``: the gradient ``a_k x`` is linear in ``x``."""

    def __init__(self, side: int, classes: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(2)
        self.a = nn.Parameter(torch.rand(classes, 3, side, side, generator=gen) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x[:, None] ** 2 * self.a).flatten(2).sum(-1)


class SmoothNet(nn.Module):
    """A small smooth CNN (softplus, tanh): path integrals converge fast."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.Softplus(),
            nn.Conv2d(6, 6, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 4),
        )
        with torch.no_grad():  # saturate the nonlinearities: IG's steps matter
            self.body[0].weight.mul_(3)
            self.body[2].weight.mul_(3)
            self.body[-1].weight.mul_(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def score(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, targets[:, None])[:, 0]


def probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).float().softmax(-1)


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    """The embedded CNN (random weights, 8 classes): conv, batch norm, ReLU, max-pool, GAP, linear."""
    return make_model("shapes_cnn")


TWO = torch.tensor([1, 6])  # targets of the two test images


@pytest.fixture(scope="module")
def sharp(cnn) -> nn.Module:
    """The embedded CNN with its head scaled 30-fold: its probabilities move visibly when parts of
    the image are hidden (the random one's barely do). Use with targets :data:`SHARP`."""
    model = copy.deepcopy(cnn)
    with torch.no_grad():
        model.fc.weight.mul_(30)
        model.fc.bias.mul_(30)
    return model


SHARP = torch.tensor([1, 0])  # classes with probabilities 0.15-0.3 under ``sharp``


# --------------------------------------------------------------------------------- gradients


def test_gradients_of_a_linear_model():
    net = LinearNet(8).eval()
    x, t = make_images("shapes_cnn", n=2, side=8), torch.tensor([0, 2])
    w = net.w(t)
    close(Gradient()(net, x, t), w.abs().amax(1), 1e-6)
    close(Gradient(reduction="sum", abs=False)(net, x, t), w.sum(1), 1e-6)
    close(InputXGradient()(net, x, t), (x * w).sum(1), 1e-6)


def test_relu_backward_rules_closed_form_on_a_relu_network():
    """Gradient: ``W1^T (w2 * [z > 0])``; guided backprop: ``W1^T (relu(w2) * [z > 0])``;
    deconvnet: ``W1^T relu(w2)`` (the forward gate is dropped); input x gradient."""
    net = ReLUNet(8).eval()
    x, t = make_images("shapes_cnn", n=2, side=8), torch.tensor([0, 2])
    gate = (net.hidden(x) > 0).float()
    w2 = net.fc2.weight.detach()[t]
    assert 0 < gate.mean() < 1 and (w2 < 0).any() and (w2 > 0).any()  # every rule matters
    grad = net.back(x, w2 * gate)
    close(Gradient()(net, x, t), grad.abs().amax(1))
    close(InputXGradient()(net, x, t), (x * grad).sum(1))
    close(GuidedBackprop()(net, x, t), net.back(x, w2.clamp_min(0) * gate).abs().amax(1))
    close(Deconvolution()(net, x, t), net.back(x, w2.clamp_min(0)).abs().amax(1))
    close(GuidedBackprop(reduction="sum")(net, x, t), net.back(x, w2.clamp_min(0) * gate).sum(1))


@pytest.mark.parametrize("baseline", [0.0, -0.4, 0.6])
def test_deeplift_rescale_rule_closed_form_on_a_relu_network(baseline):
    """Rescale rule: multiplier ``(relu(z) - relu(z0)) / (z - z0)`` per hidden unit; the map sums
    to ``f(x) - f(baseline)`` exactly."""
    net = ReLUNet(8).double().eval()
    x, t = make_images("shapes_cnn", n=2, side=8).double(), torch.tensor([0, 2])
    ref = torch.full_like(x, baseline)
    z, z0 = net.hidden(x), net.hidden(ref)
    rescale = (z.relu() - z0.relu()) / (z - z0)
    assert ((rescale > 0) & (rescale < 1)).any()  # units that cross 0 between baseline and x
    expected = ((x - ref) * net.back(x, net.fc2.weight.detach()[t] * rescale)).sum(1)
    got = DeepLift(baseline=baseline)(net, x, t)
    close(got, expected)
    delta = score(net, x, t) - score(net, ref, t)
    torch.testing.assert_close(got.double().sum((1, 2)), delta, rtol=1e-5, atol=0)


@pytest.mark.parametrize("epsilon", [1e-9, 0.5])
def test_lrp_epsilon_rule_closed_form_on_a_relu_network(epsilon):
    """``R_in = a * W^T (R_out / (z + eps sign z))`` layer by layer from ``R = f_c(x)``; with a
    tiny epsilon on a ReLU network LRP equals input x gradient."""
    net = ReLUNet(8).double().eval()
    x, t = make_images("shapes_cnn", n=2, side=8).double(), torch.tensor([0, 2])
    z1 = net.hidden(x)
    out = score(net, x, t)

    def stabilised(z: torch.Tensor) -> torch.Tensor:
        return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z)

    relevance_hidden = z1.relu() * net.fc2.weight.detach()[t] * (out / stabilised(out))[:, None]
    expected = (x * net.back(x, relevance_hidden / stabilised(z1))).sum(1)
    got = LRP(epsilon=epsilon)(net, x, t)
    close(got, expected)
    if epsilon < 1e-6:
        close(got, InputXGradient()(net, x, t))
    else:
        assert (got - InputXGradient()(net, x, t)).abs().max() > 1e-3 * expected.abs().max()


def _captum_lrp(model, x, t, epsilon):
    from captum.attr import LRP as CaptumLRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    model = copy.deepcopy(model)  # captum leaves its rules on the modules
    for m in model.modules():
        if isinstance(
            m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
        ):
            m.rule = EpsilonRule(epsilon=epsilon)
    return CaptumLRP(model).attribute(x, target=t)


def test_gradient_family_equals_captum_called_directly(cnn):
    """The same model, inputs, targets and settings through captum, then the same channel pooling
    written out: max |.| over channels or the signed sum."""
    import captum.attr as ca

    x, t = make_images("shapes_cnn", n=2, side=24), TWO
    cases = [
        (Gradient(), ca.Saliency(cnn).attribute(x, target=t, abs=True).abs().amax(1)),
        (
            Gradient(abs=False, reduction="sum"),
            ca.Saliency(cnn).attribute(x, target=t, abs=False).sum(1),
        ),
        (InputXGradient(), ca.InputXGradient(cnn).attribute(x, target=t).sum(1)),
        (GuidedBackprop(), ca.GuidedBackprop(cnn).attribute(x, target=t).abs().amax(1)),
        (Deconvolution(), ca.Deconvolution(cnn).attribute(x, target=t).abs().amax(1)),
        (DeepLift(baseline=0.3), ca.DeepLift(cnn).attribute(x, baselines=0.3, target=t).sum(1)),
        (LRP(epsilon=0.05), _captum_lrp(cnn, x, t, 0.05).sum(1)),
    ]
    for method, ref in cases:
        close(method(cnn, x, t), ref.detach())


# --------------------------------------------------------------------------------- IG


@pytest.mark.parametrize("rule", INTEGRATIONS)
@pytest.mark.parametrize("baseline", [0.0, -0.7, 1.3])
def test_integrated_gradients_of_a_linear_model_is_exact_for_any_step_count(baseline, rule):
    """``IG = (x - baseline) * w`` exactly, for every rule and step count."""
    net = LinearNet(8).double().eval()
    x, t = make_images("shapes_cnn", n=2, side=8).double(), torch.tensor([0, 2])
    expected = ((x - baseline) * net.w(t)).sum(1)
    for n_steps in (2, 7):
        got = IntegratedGradients(n_steps=n_steps, baseline=baseline, integration=rule)(net, x, t)
        close(got, expected, 1e-6)


@pytest.fixture(scope="module")
def smooth():
    """SmoothNet in float64 and two 12 x 12 images (float64)."""
    return SmoothNet().double().eval(), make_images("shapes_cnn", n=2, side=12).double()


@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_integrated_gradients_equals_captum_with_the_same_baseline_steps_and_rule(baseline, smooth):
    from captum.attr import IntegratedGradients as CaptumIG

    net, x = smooth
    t = torch.tensor([1, 3])
    maps = {}
    rules = ("gausslegendre", "riemann_left", "riemann_trapezoid")
    for n_steps, rule in itertools.product((2, 3, 9), rules):
        got = IntegratedGradients(n_steps=n_steps, baseline=baseline, integration=rule)(net, x, t)
        ref = CaptumIG(net).attribute(x, baselines=baseline, target=t, n_steps=n_steps, method=rule)
        if rule == "riemann_trapezoid":  # captum's weights sum to (n - 1) / n: ours to 1
            ref = ref * n_steps / (n_steps - 1)
        close(got, ref.sum(1), 1e-6)
        maps[n_steps, rule] = got
    # the knobs reach the map: fewer steps or another rule give another map
    scale = maps[9, "gausslegendre"].abs().max()
    assert (maps[2, "gausslegendre"] - maps[9, "gausslegendre"]).abs().max() > 1e-2 * scale
    assert (maps[3, "riemann_left"] - maps[3, "gausslegendre"]).abs().max() > 1e-2 * scale
    other = IntegratedGradients(n_steps=9, baseline=baseline - 0.8)(net, x, t)
    assert (other - maps[9, "gausslegendre"]).abs().max() > 1e-2 * scale


@pytest.mark.parametrize("baseline", [0.0, -0.6, 0.9])
@pytest.mark.parametrize(
    "n_steps,rule,rtol",
    [
        (16, "gausslegendre", 1e-6),  # converges fast on a smooth path: float32 rounding is left
        (48, "gausslegendre", 1e-6),
        (400, "riemann_trapezoid", 1e-4),  # error O(1/n^2): ~5e-6 here
    ],
)
def test_integrated_gradients_completeness_to_1e4(baseline, n_steps, rule, rtol, smooth):
    """The map sums to ``f(x) - f(baseline)`` within 1e-4 (relative; 1e-6 with Gauss-Legendre),
    in float64."""
    net, x = smooth
    with torch.no_grad():  # per image the class whose logit the path changes most
        t = (net(x) - net(torch.full_like(x, baseline))).abs().argmax(1)
    got = IntegratedGradients(n_steps=n_steps, baseline=baseline, integration=rule)(net, x, t)
    delta = score(net, x, t) - score(net, torch.full_like(x, baseline), t)
    assert (delta.abs() > 0.1).all(), delta
    torch.testing.assert_close(got.double().sum((1, 2)), delta, rtol=rtol, atol=0)


# --------------------------------------------------------------------------------- noise


def test_noise_wrappers_of_a_linear_model():
    """A constant gradient: SmoothGrad is the gradient whatever the noise, VarGrad is 0."""
    net = LinearNet(8).eval()
    x, t = make_images("shapes_cnn", n=2, side=8), torch.tensor([0, 2])
    w = net.w(t)
    close(SmoothGrad(Gradient(), n_samples=5, noise_level=0.3)(net, x, t), w.abs().amax(1))
    ixg = SmoothGrad(Gradient(abs=False, reduction="sum"), n_samples=5, noise_level=0.3)
    close(ixg(net, x, t), w.sum(1))
    var = VarGrad(Gradient(abs=False), n_samples=5, noise_level=0.3)(net, x, t)
    assert var.abs().max() <= 1e-6 * w.pow(2).max()


def _unit_normal(z: torch.Tensor, name: str) -> None:
    """``z`` ``[B, H, W]`` looks like i.i.d. standard normal numbers, image by image."""
    mean, std = z.flatten(1).mean(1), z.flatten(1).std(1)
    assert (mean.abs() < 0.15).all() and ((std - 1).abs() < 0.1).all(), (name, mean, std)


def _two_ranges(side: int) -> torch.Tensor:
    """Two images whose value ranges differ threefold (noise is relative to each one's range)."""
    x = make_images("shapes_cnn", n=2, side=side)
    return x * torch.tensor([1.0, 3.0])[:, None, None, None]


def test_smoothgrad_and_vargrad_noise_has_the_stated_sigma():
    """On ``sum(a x^2) / 2`` the gradient is ``a (x + sigma e)`` with ``sigma = noise_level x
    (max - min)`` of each image: SmoothGrad's error is ``N(0, sigma^2 |a|^2 / n)`` per pixel and
    VarGrad is ``sigma^2 |a|^2`` (population variance: times ``(n - 1) / n`` on average)."""
    net = QuadraticNet(24).eval()
    x, t = _two_ranges(24), torch.tensor([0, 2])
    n, level = 64, 0.2
    sigma = level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))[:, None, None]
    a = net.a.detach()[t]
    signed = Gradient(abs=False, reduction="sum")
    sg = SmoothGrad(signed, n_samples=n, noise_level=level)(net, x, t)
    _unit_normal((sg - (a * x).sum(1)) / (sigma * a.pow(2).sum(1).sqrt() / math.sqrt(n)), "sg")
    vg = VarGrad(signed, n_samples=n, noise_level=level)(net, x, t)
    ratio = (vg / (sigma**2 * a.pow(2).sum(1))).flatten(1).mean(1)
    assert ((ratio - (n - 1) / n).abs() < 0.04).all(), ratio


@pytest.mark.parametrize("baseline", [0.0, 0.7])
def test_gradient_shap_of_a_linear_model_with_a_fixed_baseline_is_exact(baseline):
    net = LinearNet(8).eval()
    x, t = make_images("shapes_cnn", n=2, side=8), torch.tensor([0, 2])
    got = GradientShap(n_samples=3, baseline=baseline, baseline_std=0.0)(net, x, t)
    close(got, ((x - baseline) * net.w(t)).sum(1))


@pytest.mark.parametrize("stdev,spread", [(0.5, 0.0), (0.0, 0.5), (0.4, 0.3)])
def test_gradient_shap_noise_on_a_linear_model_has_the_stated_spread(stdev, spread):
    """Each draw gives ``(x + e - b) * w`` with ``e ~ N(0, stdev^2)``, ``b ~ N(baseline,
    baseline_std^2)``: the mean's error is ``N(0, (stdev^2 + baseline_std^2) |w|^2 / n)``."""
    net = LinearNet(24).eval()
    x, t = make_images("shapes_cnn", n=2, side=24), torch.tensor([0, 2])
    n, base = 64, 0.2
    got = GradientShap(n_samples=n, stdev=stdev, baseline=base, baseline_std=spread)(net, x, t)
    w = net.w(t)
    sd = math.sqrt((stdev**2 + spread**2) / n) * w.pow(2).sum(1).sqrt()
    _unit_normal((got - ((x - base) * w).sum(1)) / sd, "gradient_shap")


def test_gradient_shap_on_a_quadratic_model_is_one_path_point_per_draw():
    """With a fixed baseline ``b`` each draw is ``(x - b) a (b + alpha (x - b))``: the map is
    ``sum_c a (x - b) b + mean(alpha) sum_c a (x - b)^2`` for one ``mean(alpha)`` near 1/2 per
    image (the points are uniform on the path)."""
    net = QuadraticNet(16).eval()
    x, t, b = make_images("shapes_cnn", n=2, side=16), torch.tensor([0, 2]), 0.3
    got = GradientShap(n_samples=40, baseline=b, baseline_std=0.0)(net, x, t).double()
    a = net.a.detach()[t].double()
    d = x.double() - b
    start, slope = (a * d * b).sum(1), (a * d * d).sum(1)
    alpha = ((got - start) * slope).sum((1, 2)) / slope.pow(2).sum((1, 2))
    close(got, start + alpha[:, None, None] * slope, 1e-5)
    assert ((alpha - 0.5).abs() < 0.15).all(), alpha


# --------------------------------------------------------------------------------- perturbation


def test_rise_is_the_papers_estimator_on_its_own_masks(sharp):
    """``S = sum_i p_c(x * M_i) M_i / (N p)`` by a loop over the method's own masks."""
    x = make_images("shapes_cnn", n=2, side=24)
    n, p = 40, 0.3
    rise = RISE(n_masks=n, cell_size=8, p=p, internal_batch_size=7, seed=5)
    got = rise(sharp, x, SHARP)
    masks = rise.masks(24, 24, x.device)
    assert masks.shape == (n, 24, 24) and 0 <= masks.min() and masks.max() <= 1
    assert abs(float(masks.mean()) - p) < 0.08  # cells are kept with probability p
    expected = torch.zeros(2, 24, 24)
    for b in range(2):
        for mask in masks:
            expected[b] += probs(sharp, x[b : b + 1] * mask)[0, SHARP[b]] * mask
    close(got, expected / (n * p))


def _windows(n: int, window: int, stride: int) -> list[int]:
    return [i * stride for i in range(math.ceil(max(0, n - window) / stride) + 1)]


@pytest.mark.parametrize("side,window,stride,fill", [(20, 8, 6, 0.0), (22, 8, 6, -0.5)])
def test_occlusion_is_the_mean_logit_drop_of_the_windows_covering_a_pixel(
    side, window, stride, fill, sharp
):
    """A loop over the window positions (the last one clipped at the border), and captum."""
    from captum.attr import Occlusion as CaptumOcclusion

    x = make_images("shapes_cnn", n=2, side=side)
    got = Occlusion(window=window, stride=stride, fill=fill, internal_batch_size=5)(sharp, x, SHARP)
    total, count = torch.zeros(2, side, side), torch.zeros(side, side)
    full = score(sharp, x, SHARP)
    for r, c in itertools.product(_windows(side, window, stride), repeat=2):
        hidden = x.clone()
        hidden[:, :, r : r + window, c : c + window] = fill
        total[:, r : r + window, c : c + window] += (full - score(sharp, hidden, SHARP))[
            :, None, None
        ]
        count[r : r + window, c : c + window] += 1
    assert count.min() >= 1
    close(got, total / count)
    ref = CaptumOcclusion(sharp).attribute(
        x,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=fill,
        target=SHARP,
    )
    close(got, ref[:, 0])


def test_feature_ablation_is_the_probability_drop_of_each_superpixel(sharp):
    from captum.attr import FeatureAblation as CaptumFeatureAblation

    x, fill = make_images("shapes_cnn", n=2, side=24), -0.4
    method = FeatureAblation(n_segments=12, fill=fill, internal_batch_size=5)
    got = method(sharp, x, SHARP)
    seg = method.segments(x)
    assert (seg.flatten(1).amax(1) >= 2).all()
    expected = torch.zeros(2, 24, 24)
    full = probs(sharp, x)[torch.arange(2), SHARP]
    for b in range(2):
        for label in seg[b].unique():
            inside = seg[b] == label
            hidden = torch.where(inside, torch.full_like(x[b], fill), x[b])
            expected[b][inside] = full[b] - probs(sharp, hidden[None])[0, SHARP[b]]
    close(got, expected)
    ref = CaptumFeatureAblation(lambda z: probs(sharp, z)).attribute(
        x, target=SHARP, baselines=fill, feature_mask=seg[:, None]
    )
    close(got, ref[:, 0])


# --------------------------------------------------------------------------------- surrogates


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).double().numpy()


def test_lime_wrapper_is_the_lime_package_on_the_same_samples(sharp):
    """lime's ``LimeImageExplainer`` called directly, with the wrapper's per-image seed, superpixels,
    hide colour and kernel width: the same coefficients on the same superpixels."""
    from lime import lime_image

    x, seed = make_images("shapes_cnn", n=2, side=24), 3
    method = Lime(n_samples=60, n_segments=8, kernel_width=0.4, hide_color=-0.3, seed=seed)
    got = method(sharp, x, SHARP)
    seg = method.segments(x).numpy()

    def classify(batch: np.ndarray) -> np.ndarray:
        return probs(sharp, torch.from_numpy(batch).float().permute(0, 3, 1, 2)).numpy()

    expected = np.zeros(seg.shape)
    for i, s in enumerate(per_image_seeds(x, seed)):
        target = int(SHARP[i])
        explanation = lime_image.LimeImageExplainer(kernel_width=0.4, random_state=s)
        found = explanation.explain_instance(
            _hwc(x)[i],
            classify,
            labels=(target,),
            top_labels=None,
            hide_color=-0.3,
            num_samples=60,
            segmentation_fn=lambda _img, i=i: seg[i],
        )
        coef = np.zeros(seg[i].max() + 1)
        for feature, weight in found.local_exp[target]:
            coef[feature] = weight
        expected[i] = coef[seg[i]]
    close(got, torch.from_numpy(expected), 1e-5)


def test_batched_lime_is_limes_regression_on_its_own_samples(sharp):
    """The method's own coalitions, each perturbed image scored one by one, then lime's
    ``LimeBase.explain_instance_with_data`` (cosine distances, kernel, Ridge) on them."""
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    x, seed, width, hide = make_images("shapes_cnn", n=2, side=24), 4, 0.3, -0.2
    method = BatchedLime(n_samples=50, n_segments=8, kernel_width=width, hide_color=hide, seed=seed)
    got = method(sharp, x, SHARP)
    seg = method.segments(x)
    counts = seg.flatten(1).amax(1) + 1
    masks, _, _ = method.coalitions(content_keys(x, seed), counts)
    expected = np.zeros(seg.shape)
    for i in range(2):
        m, target = int(counts[i]), int(SHARP[i])
        data = masks[i, :, :m].double().numpy()
        assert (data[0] == 1).all()
        keep = torch.from_numpy(data).bool()[:, seg[i]]  # [S, H, W]
        images = torch.where(keep[:, None], x[i], torch.full_like(x[i], hide))
        labels = probs(sharp, images).double().numpy()
        distances = pairwise_distances(data, data[:1], metric="cosine").ravel()
        base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / width**2)), random_state=0)
        _, found, _, _ = base.explain_instance_with_data(data, labels, distances, target, 100000)
        coef = np.zeros(m)
        for feature, weight in found:
            coef[feature] = weight
        expected[i] = coef[seg[i].numpy()]
    close(got, torch.from_numpy(expected), 1e-5)


def _exact_shapley(value, m: int) -> np.ndarray:
    """Shapley values of the set function ``value(frozenset)`` over ``m`` players, by enumeration."""
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for k in range(m):
            weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
            for subset in itertools.combinations(others, k):
                phi[i] += weight * (value(frozenset(subset) | {i}) - value(frozenset(subset)))
    return phi


def test_kernel_shap_is_the_exact_shapley_value_when_every_coalition_is_enumerated(sharp):
    """Four quadrants on one image, five stripes on the other; an absent superpixel shows shap's
    ``blur(k, k)`` of the image; the Shapley values by enumeration of every coalition."""
    import shap

    side, blur = 16, 5
    x = 2 * make_images("shapes_cnn", n=2, side=side)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    seg = torch.stack([(rows >= side // 2) * 2 + (cols >= side // 2), cols * 5 // side])
    expected = np.zeros((2, side, side))
    for i in range(2):
        # a masker per image: shap's caches the blur under id() of a temporary (see KernelShap)
        masker = shap.maskers.Image(f"blur({blur},{blur})", shape=(side, side, 3))
        image = _hwc(x)[i].astype(np.float32)
        blurred = torch.from_numpy(masker(np.zeros(image.size, dtype=bool), image)[0][0])
        blurred = blurred.permute(2, 0, 1)

        def value(present: frozenset, i=i, blurred=blurred) -> float:
            keep = torch.isin(seg[i], torch.tensor(sorted(present), dtype=torch.long))
            shown = torch.where(keep, x[i], blurred)
            return float(probs(sharp, shown[None])[0, SHARP[i]])

        phi = _exact_shapley(value, int(seg[i].max()) + 1)
        expected[i] = phi[seg[i].numpy()]
    assert np.abs(expected).max() > 1e-3
    for cls in (KernelShap, BatchedKernelShap):
        method = cls(n_samples=64, blur_size=blur)
        method.segments = lambda images: seg.clone()
        close(method(sharp, x, SHARP), torch.from_numpy(expected))


def test_kernel_shap_fills_each_image_with_its_own_blur(sharp, monkeypatch):
    """shap's image masker keeps the blur of the last image under ``id()`` of a temporary array,
    which the next image's temporary can reuse; with that id made constant (the collision every
    time), each image of a batch must still get its own blur: the maps equal each image alone."""
    import shap.maskers._image as shap_image

    x = 2 * make_images("shapes_cnn", n=3, side=16)
    targets = torch.tensor([1, 0, 1])
    method = KernelShap(n_samples=32, n_segments=4, blur_size=5)
    alone = torch.cat([method(sharp, x[i : i + 1], targets[i : i + 1]) for i in range(3)])
    monkeypatch.setattr(shap_image, "id", lambda obj: 0, raising=False)
    close(method(sharp, x, targets), alone)


@pytest.mark.parametrize("ours,theirs", [(CaptumLime, "Lime"), (CaptumKernelShap, "KernelShap")])
def test_captum_surrogates_are_captum_on_the_same_seed_and_superpixels(ours, theirs, sharp):
    import captum.attr

    x, seed, fill = make_images("shapes_cnn", n=2, side=24), 2, -0.3
    method = ours(n_samples=40, n_segments=8, fill=fill, internal_batch_size=16, seed=seed)
    got = method(sharp, x, SHARP)
    seg = method.segments(x)
    explainer = getattr(captum.attr, theirs)(lambda z: probs(sharp, z))
    expected = []
    for i, s in enumerate(per_image_seeds(x, seed)):
        with torch.random.fork_rng():
            torch.manual_seed(s)
            a = explainer.attribute(
                x[i : i + 1],
                target=SHARP[i : i + 1],
                baselines=fill,
                feature_mask=seg[i : i + 1, None],
                n_samples=40,
                perturbations_per_eval=16,
            )
        expected.append(a[:, 0])
    close(got, torch.cat(expected), 1e-5)


# --------------------------------------------------------------------------------- CAMs


@pytest.fixture
def unscaled(monkeypatch):
    """pytorch-grad-cam without its min-max scaling and resize: its CAM at the layer's resolution
    after its ReLU, ``[B, h, w]``; and ScoreCAM's upsampling with ``align_corners=False`` (ours;
    the package's ``UpsamplingBilinear2d`` aligns corners)."""
    import pytorch_grad_cam.base_cam as base_cam

    monkeypatch.setattr(base_cam, "scale_cam_image", lambda cam, target_size=None: np.float32(cam))
    monkeypatch.setattr(
        torch.nn,
        "UpsamplingBilinear2d",
        lambda size: partial(F.interpolate, size=size, mode="bilinear", align_corners=False),
    )


def _package_cam(cls, model, layer, x, targets, **kw) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(model)  # the package swaps layers (AblationCAM) and sets eval mode
    with cls(model=model, target_layers=[model.get_submodule(layer)], **kw) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in targets])


def _resize(maps: np.ndarray, side: int) -> torch.Tensor:
    """OpenCV's bilinear resize (half-pixel centres), as pytorch-grad-cam resizes its maps."""
    import cv2

    return torch.from_numpy(
        np.stack(
            [cv2.resize(np.float32(m), (side, side), interpolation=cv2.INTER_LINEAR) for m in maps]
        )
    )


CAM_PAIRS = {
    "gradcam": (GradCAM, "GradCAM"),
    "gradcam_pp": (GradCAMPlusPlus, "GradCAMPlusPlus"),
    "xgradcam": (XGradCAM, "XGradCAM"),
    "layercam": (LayerCAM, "LayerCAM"),
    "scorecam": (ScoreCAM, "ScoreCAM"),
    "ablationcam": (AblationCAM, "AblationCAM"),
}


@pytest.mark.parametrize("name", list(CAM_PAIRS))
def test_cam_family_equals_the_package_before_its_scaling(name, cnn, unscaled):
    """Values, not only the shape of the map: the package's layer-resolution CAM resized by
    OpenCV equals ours (the package's min-max scaling turned off)."""
    import pytorch_grad_cam

    ours, theirs = CAM_PAIRS[name]
    x = make_images("shapes_cnn", n=2, side=48)  # a 6 x 6 grid at features.3
    ref = _package_cam(getattr(pytorch_grad_cam, theirs), cnn, "features.3", x, TWO)
    assert ref.shape == (2, 6, 6) and (ref > 0).mean() > 0.2, ref
    close(ours("features.3")(cnn, x, TWO), _resize(ref, 48))


def test_cam_is_the_heads_row_times_the_feature_maps(cnn):
    """CAM = ``W_c . A`` (no ReLU); Grad-CAM on GAP + linear = CAM / (h w)."""
    x = make_images("shapes_cnn", n=2, side=48)
    with torch.no_grad():
        acts = cnn.features(x)
    expected = torch.einsum("bk,bkhw->bhw", cnn.fc.weight.detach()[TWO], acts)
    assert (expected < 0).any() and (expected > 0).any()
    got = CAM("features.3")(cnn, x, TWO)
    close(got, _resize(expected.numpy(), 48))
    close(GradCAM("features.3", relu="none")(cnn, x, TWO) * 36, got)


def test_eigencam_is_the_first_principal_component_projection(cnn):
    """pytorch-grad-cam's ``get_2d_projection`` of the layer's output, up to the SVD's sign, which
    is fixed so that the largest magnitude is positive; then the ReLU before upsampling."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    x = make_images("shapes_cnn", n=2, side=48)
    with torch.no_grad():
        ref = torch.from_numpy(get_2d_projection(cnn.features(x).numpy()))
    sign = torch.where(ref.flatten(1).amax(1) >= ref.flatten(1).amin(1).abs(), 1.0, -1.0)
    ref = ref * sign[:, None, None]
    close(EigenCAM("features.3", relu="none")(cnn, x, TWO), _resize(ref.numpy(), 48))
    close(EigenCAM("features.3")(cnn, x, TWO), _resize(ref.clamp_min(0).numpy(), 48))


def test_guided_gradcam_is_guided_backprop_times_the_upsampled_gradcam(cnn, unscaled):
    """The package's guided backprop times its (unscaled) Grad-CAM resized, max |.| over channels."""
    from pytorch_grad_cam import GradCAM as PackageGradCAM
    from pytorch_grad_cam import GuidedBackpropReLUModel

    x = make_images("shapes_cnn", n=2, side=48)
    cams = _resize(_package_cam(PackageGradCAM, cnn, "features.3", x, TWO), 48).numpy()
    guided = GuidedBackpropReLUModel(model=copy.deepcopy(cnn), device=torch.device("cpu"))
    expected = np.stack(
        [
            np.abs(
                guided(x[i : i + 1].clone(), target_category=int(TWO[i])) * cams[i][..., None]
            ).max(-1)
            for i in range(2)
        ]
    )
    close(GuidedGradCAM("features.3")(cnn, x, TWO), torch.from_numpy(expected))


def test_vit_gradcam_equals_the_package_before_its_scaling(unscaled):
    from pytorch_grad_cam import GradCAM as PackageGradCAM

    model = make_model("vit")
    x, t = make_images("vit", n=2), torch.tensor([0, 3])
    layer = "encoder.layers.encoder_layer_1.ln_1"

    def reshape(tokens):
        return tokens[:, 1:].reshape(tokens.shape[0], 4, 4, tokens.shape[2]).permute(0, 3, 1, 2)

    ref = _package_cam(PackageGradCAM, model, layer, x, t, reshape_transform=reshape)
    assert (ref > 0).mean() > 0.2
    close(ViTGradCAM(layer)(model, x, t), _resize(ref, 32))


@pytest.mark.parametrize("reduction", ["sum", "l2", "max_abs"])
def test_activation_map_is_the_layers_output_pooled_over_channels(reduction, cnn):
    """A signed layer (the conv of the last block), pooled by the formula the name states."""
    x = make_images("shapes_cnn", n=2, side=48)
    with torch.no_grad():
        acts = cnn.features[3][0](cnn.features[:3](x))
    assert (acts < 0).any()
    pooled = {
        "sum": acts.sum(1),
        "l2": acts.pow(2).sum(1).sqrt(),
        "max_abs": acts.abs().amax(1),
    }[reduction]
    got = ActivationMap("features.3.0", reduction=reduction)(cnn, x, TWO)
    close(got, _resize(pooled.numpy(), 48))


# --------------------------------------------------------------------------------- attention


class HandAttention(nn.Module):
    """Two ``nn.MultiheadAttention`` blocks (batch first, as torchvision's ViT calls them) whose
    attention is set by hand: block ``l``, head ``h`` attends with ``softmax(s^2 L[l, h])``, ``s``
    each image's pixel ``[0, 0, 0]``. Tokens are ``s`` times one-hot rows; ``q = sqrt(T) tokens``,
    ``k = tokens L^T``, so ``q k^T / sqrt(d) = s^2 L``."""

    def __init__(self, logits: torch.Tensor, classes: int = 3) -> None:
        super().__init__()
        layers, heads, t, _ = logits.shape
        e = heads * t
        self.register_buffer("onehot", torch.eye(t, e))
        self.blocks = nn.ModuleList()
        torch.manual_seed(4)
        for layer in range(layers):
            mha = nn.MultiheadAttention(e, heads, batch_first=True)
            with torch.no_grad():
                mha.in_proj_bias.zero_()
                mha.in_proj_weight[: 2 * e].zero_()
                for h in range(heads):
                    rows = slice(h * t, (h + 1) * t)
                    mha.in_proj_weight[rows, :t] = math.sqrt(t) * torch.eye(t)
                    mha.in_proj_weight[e + h * t : e + (h + 1) * t, :t] = logits[layer, h]
            self.blocks.append(mha)
        self.head = nn.Linear(e, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x[:, 0, 0, 0, None, None] * self.onehot
        out = torch.zeros_like(tokens)
        for mha in self.blocks:
            out = out + mha(tokens, tokens, tokens, need_weights=False)[0]
        return self.head(out[:, 0])


@pytest.fixture(scope="module")
def hand():
    """The model, its images ``[2, 3, 2, 2]`` (a 2 x 2 patch grid, no upsampling) and the attention
    each block gives each image, ``[L, B, heads, T, T]`` (float64)."""
    gen = torch.Generator().manual_seed(5)
    logits = 1.5 * torch.randn(2, 2, 5, 5, generator=gen)
    model = HandAttention(logits).eval()
    x = torch.rand(2, 3, 2, 2, generator=gen)
    x[:, 0, 0, 0] = torch.tensor([1.0, 0.7])
    s2 = x[:, 0, 0, 0].double() ** 2
    att = (s2[None, :, None, None, None] * logits.double()[:, None]).softmax(-1)
    with torch.no_grad():  # the construction does what it says
        tokens = x[:, 0, 0, 0, None, None] * model.onehot
        for layer, mha in enumerate(model.blocks):
            w = mha(tokens, tokens, tokens, average_attn_weights=False)[1]
            torch.testing.assert_close(w.double(), att[layer], rtol=0, atol=1e-6)
    return model, x, att


def _fuse(att: torch.Tensor, how: str) -> torch.Tensor:
    return {"mean": att.mean(-3), "max": att.amax(-3), "min": att.amin(-3)}[how]


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_raw_attention_of_hand_set_attention(head_fusion, hand):
    """The last block's class-token row over the patches, fused over heads, row-major."""
    model, x, att = hand
    expected = _fuse(att[-1], head_fusion)[:, 0, 1:].reshape(2, 2, 2)
    close(RawAttention(head_fusion)(model, x, torch.tensor([0, 1])), expected)


@pytest.mark.parametrize("head_fusion,discard", [("mean", 0.0), ("max", 0.0), ("mean", 0.3)])
def test_attention_rollout_of_hand_set_attention(head_fusion, discard, hand):
    """Abnar & Zuidema: ``R = A'_L ... A'_1`` with ``A' = rownorm(0.5 A + 0.5 I)`` (the lowest
    ``discard`` fraction of each fused matrix set to 0 first); the class token's row of ``R``."""
    model, x, att = hand
    t = att.shape[-1]
    rollout = torch.eye(t, dtype=torch.float64).expand(2, t, t)
    for layer in att:  # first block first: later blocks multiply from the left
        a = _fuse(layer, head_fusion).clone()
        if discard:
            for b in range(2):
                flat = a[b].flatten()
                flat[flat.argsort()[: int(t * t * discard)]] = 0
                a[b] = flat.view(t, t)
        a = 0.5 * a + 0.5 * torch.eye(t, dtype=torch.float64)
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    expected = rollout[:, 0, 1:].reshape(2, 2, 2)
    got = AttentionRollout(head_fusion, discard_ratio=discard)(model, x, torch.tensor([0, 1]))
    close(got, expected)


# --------------------------------------------------------------------------------- baselines


def test_sobel_equals_scipy():
    """``scipy.ndimage.sobel`` along both axes (``nearest`` = replicate padding), magnitude per
    channel, then the reduction (l2 over channels by default)."""
    from scipy import ndimage

    x = make_images("shapes_cnn", n=2, side=20).double().numpy()
    magnitude = np.zeros_like(x)
    for b, c in itertools.product(range(2), range(3)):  # 2-D: scipy smooths along every other axis
        image = x[b, c]
        gx = ndimage.sobel(image, axis=1, mode="nearest")
        magnitude[b, c] = np.hypot(gx, ndimage.sobel(image, axis=0, mode="nearest"))
    got = Sobel()(nn.Identity(), torch.from_numpy(x).float(), TWO)
    close(got, torch.from_numpy(np.sqrt((magnitude**2).sum(1))))
    close(Sobel("sum")(nn.Identity(), torch.from_numpy(x).float(), TWO), magnitude.sum(1))


def test_sobel_of_one_bright_square():
    """A square of value v on 0: 4v on both sides of a straight edge, 3 sqrt(2) v at the inner
    corner, 0 inside and outside; times sqrt(3) over three equal channels (l2)."""
    v, x = 2.0, torch.zeros(1, 3, 16, 16)
    x[:, :, 5:11, 5:11] = v
    got = Sobel()(nn.Identity(), x, torch.tensor([0]))[0] / math.sqrt(3)
    for r, c, expected in [
        (8, 4, 4 * v),  # left of the left edge
        (8, 5, 4 * v),  # on it
        (4, 8, 4 * v),  # above the top edge
        (10, 8, 4 * v),  # the bottom row of the square
        (5, 5, 3 * math.sqrt(2) * v),  # the corner pixel
        (4, 4, math.sqrt(2) * v),  # diagonally outside it
        (8, 8, 0.0),  # inside
        (8, 2, 0.0),  # outside
        (0, 0, 0.0),  # the image corner (replicate padding: no edge)
    ]:
        assert abs(float(got[r, c]) - expected) < 1e-5, (r, c, float(got[r, c]), expected)
    assert float(got.sum()) > 0 and (got[6:10, 6:10] == 0).all()


@pytest.mark.parametrize("sigma", [0.1, 0.25])
def test_centre_gaussian_is_the_stated_gaussian(sigma):
    """``exp(-((i - (H-1)/2)^2 + (j - (W-1)/2)^2) / (2 (sigma max(H, W))^2))`` on a non-square image."""
    h, w = 12, 20
    i = torch.arange(h, dtype=torch.float64)[:, None] - (h - 1) / 2
    j = torch.arange(w, dtype=torch.float64)[None, :] - (w - 1) / 2
    expected = torch.exp(-(i**2 + j**2) / (2 * (sigma * max(h, w)) ** 2))
    got = CentreGaussian(sigma)(nn.Identity(), torch.randn(2, 3, h, w), TWO)
    close(got, expected.expand(2, h, w), 1e-6)


def test_random_maps_are_uniform_independent_and_blind_to_the_model():
    from scipy import stats

    x = make_images("shapes_cnn", n=2, side=64)
    maps = Random(seed=1)(nn.Identity(), x, TWO)
    for m in maps:
        assert stats.kstest(m.flatten().numpy(), "uniform").pvalue > 1e-3
        assert abs(np.corrcoef(m[:, 1:].flatten(), m[:, :-1].flatten())[0, 1]) < 0.05
    assert abs(np.corrcoef(maps[0].flatten(), maps[1].flatten())[0, 1]) < 0.05
    other = Random(seed=2)(nn.Identity(), x, TWO)
    assert abs(np.corrcoef(maps.flatten(), other.flatten())[0, 1]) < 0.05
    same = Random(seed=1)(LinearNet(64), x, torch.tensor([2, 0]))
    torch.testing.assert_close(same, maps, rtol=0, atol=0)
