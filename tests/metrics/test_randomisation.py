"""The randomisation sanity checks (metrics/randomisation.py) against independent computations on small hand-made cases."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.stats
import torch
from hydra.utils import instantiate
from skimage.metrics import structural_similarity
from torch import nn

from bench import ROOT
from bench.api import compose
from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.core.rng import content_keys, keyed_normal
from bench.data.shapes import ShapesDataset
from bench.methods.base import Method
from bench.methods.cam import GradCAM
from bench.metrics.randomisation import (
    DataRandomisation,
    EfficientMPRT,
    ModelRandomisation,
    RandomLogit,
    SmoothMPRT,
    histogram_entropy,
    randomisation_layers,
    randomise_layer,
)
from bench.models import load_shapes_cnn
from tests.metrics import _sanity_helpers as H

SHAPES_CKPT = "results/reference/models/shapes_cnn.pt"
SHUFFLED_CKPT = "results/reference/models/shapes_cnn_shuffled.pt"
MY_CONFIGS = [
    "model_randomisation_cascading",
    "model_randomisation_independent",
    "mprt",
    "data_randomisation",
    "efficient_mprt",
    "smooth_mprt",
    "random_logit",
]


class InputOnly(Method):
    """A 'method' that ignores the model: the image's channel sum (identical maps for every model)."""

    def attribute(self, model, images, targets):
        return images.sum(1)


class Recorder(Method):
    """Records the targets it is asked to explain, then defers to a signed gradient."""

    def __init__(self):
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def attribute(self, model, images, targets):
        self.calls.append(targets.clone())
        return H.SignedGradient().attribute(model, images, targets)


def test_histogram_entropy_matches_numpy_and_scipy_bit_for_bit():
    g = torch.Generator().manual_seed(5)
    m = torch.rand(20, 500, generator=g) ** 3
    m[0] = 0.25  # constant: numpy's +-0.5 range
    m[1] = torch.linspace(0, 1, 500)  # values on bin edges
    m[2, :250] = 0.0  # a heavy tie
    m[3] = torch.randn(500, generator=g) * 1e-3 - 7.0  # negative, narrow range
    got = histogram_entropy(m, 100).numpy()
    expect = [scipy.stats.entropy(np.histogram(x, bins=100)[0]) for x in m.numpy()]
    np.testing.assert_allclose(got, expect, atol=1e-12)
    assert got[0] == 0.0


# ------------------------------------------------------------------ randomisation


def test_layers_auto_follow_quantus_and_the_keys():
    model = H.tiny_bn_net()
    top_down = randomisation_layers(model)
    assert top_down == ["fc", "features.4", "features.3", "features.1", "features.0"]
    assert randomisation_layers(model, direction="bottom_up") == top_down[::-1]
    assert randomisation_layers(model, batchnorm="skip") == ["fc", "features.3", "features.0"]
    assert randomisation_layers(model, ["features.0", "fc"], direction="top_down") == [
        "fc",
        "features.0",
    ]
    with pytest.raises(ConfigError, match="fetures.0.*Did you mean features.0"):
        randomisation_layers(model, ["fetures.0"])
    with pytest.raises(ConfigError, match="features.2 has no parameters"):
        randomisation_layers(model, ["features.2"])


def test_randomise_layer_reruns_the_initialiser_keeps_bn_statistics_and_restores_the_rng():
    model = H.tiny_bn_net()
    before = H.state_of(model)
    rng = torch.get_rng_state()
    randomise_layer(model, "features.3", seed=7)
    randomise_layer(model, "features.4", seed=7)
    assert torch.equal(torch.get_rng_state(), rng)
    fresh = nn.Conv2d(6, 6, 3, padding=1)
    torch.manual_seed(7)
    fresh.reset_parameters()
    assert torch.equal(model.features[3].weight, fresh.weight)
    assert torch.equal(model.features[3].bias, fresh.bias)
    bn = model.features[4]
    assert torch.equal(bn.weight, torch.ones(6)) and torch.equal(bn.bias, torch.zeros(6))
    assert torch.equal(bn.running_mean, before["features.4.running_mean"])  # kept as trained
    assert torch.equal(bn.running_var, before["features.4.running_var"])
    assert torch.equal(model.features[0].weight, before["features.0.weight"])  # untouched
    randomise_layer(model, "features.4", seed=7, batchnorm="all")
    assert torch.equal(bn.running_mean, torch.zeros(6)) and torch.equal(
        bn.running_var, torch.ones(6)
    )
    # a container is one step: every resettable submodule re-initialised, each after the same seed
    block = H.tiny_bn_net()
    assert randomisation_layers(block, ["features"]) == ["features"]
    randomise_layer(block, "features", seed=7)
    assert torch.equal(block.features[3].weight, fresh.weight)
    first = nn.Conv2d(3, 6, 3, padding=1, bias=False)
    torch.manual_seed(7)
    first.reset_parameters()
    assert torch.equal(block.features[0].weight, first.weight)
    assert torch.equal(block.fc.weight, H.tiny_bn_net().fc.weight)


def _run(metric, model, method, x, t, seed=0):
    ctx = H.context(model, method, seed=seed)
    batch = H.batch_of(x, t)
    return metric(ctx, batch, method(model, x, t)), ctx


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_model_randomisation_leaves_the_model_and_rng_as_found(order):
    model = H.tiny_bn_net()
    model.features[0].weight.requires_grad_(True)
    before = H.state_of(model)
    x, t = H.images(3), torch.tensor([0, 1, 2])
    rng = torch.get_rng_state()
    metric = ModelRandomisation(order=order, hog_cell=8)
    out, _ = _run(metric, model, H.SignedGradient(), x, t)
    assert H.same_state(before, H.state_of(model))
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and model.features[0].weight.requires_grad
    assert set(out.scores) == set(out.curves) == {"spearman_abs", "spearman_signed", "ssim", "hog"}
    for s in out.scores:
        assert out.curves[s].shape == (3, 5) and out.scores[s].shape == (3,)
        torch.testing.assert_close(out.scores[s], out.curves[s].nanmean(1))


def test_every_check_leaves_the_model_and_rng_as_found(tmp_path):
    model = H.tiny_bn_net()
    torch.save({"state_dict": H.tiny_bn_net(seed=1).state_dict()}, tmp_path / "other.pt")
    before = H.state_of(model)
    x, t = H.images(2), torch.tensor([0, 1])
    checks = [
        EfficientMPRT(),
        SmoothMPRT(noise_samples=3),
        RandomLogit(hog_cell=8),
        DataRandomisation(str(tmp_path / "other.pt"), hog_cell=8),
    ]
    for check in checks:
        rng = torch.get_rng_state()
        _run(check, model, H.SignedGradient(), x, t)
        assert torch.equal(torch.get_rng_state(), rng), type(check).__name__
        assert H.same_state(before, H.state_of(model)), type(check).__name__
        assert not model.training


def test_model_randomisation_curve_equals_an_independent_computation():
    """Every step recomputed by hand: deep copy, manual_seed + reset_parameters, method, scipy."""
    model = H.tiny_bn_net()
    x, t = H.images(3), torch.tensor([0, 1, 2])
    method = H.SignedGradient()
    metric = ModelRandomisation(
        order="cascading",
        direction="top_down",
        target="label",
        similarities=["spearman_abs", "spearman_signed", "ssim"],
        ssim_data_range=2.0,
    )
    out, _ = _run(metric, model, method, x, t, seed=10)
    orig = method(model, x, t).numpy()
    rand = copy.deepcopy(model)
    names = ["fc", "features.4", "features.3", "features.1", "features.0"]
    for step, name in enumerate(names):
        for m in rand.get_submodule(name).modules():
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False)):
                buffers = {k: v.clone() for k, v in m.named_buffers(recurse=False)}
                torch.manual_seed(11)
                m.reset_parameters()
                for k, v in buffers.items():
                    getattr(m, k).data.copy_(v)
        new = method(rand, x, t).numpy()
        for i in range(3):
            a0 = np.clip(np.abs(orig[i]) / np.percentile(np.abs(orig[i]), 99), 0, 1)
            a1 = np.clip(np.abs(new[i]) / np.percentile(np.abs(new[i]), 99), 0, 1)
            s0 = np.clip(orig[i] / abs(np.percentile(orig[i], 99)), -1, 1)
            s1 = np.clip(new[i] / abs(np.percentile(new[i], 99)), -1, 1)
            mm = [(a - a.min()) / (a.max() - a.min()) for a in (a0, a1)]
            exp_ssim = structural_similarity(
                *[v.astype(np.float64) for v in mm],
                data_range=2.0,
                gaussian_weights=True,
                sigma=1.5,
            )
            got = {k: out.curves[k][i, step].item() for k in out.curves}
            assert got["spearman_abs"] == pytest.approx(
                scipy.stats.spearmanr(a0.ravel(), a1.ravel())[0], abs=1e-5
            )
            assert got["spearman_signed"] == pytest.approx(
                scipy.stats.spearmanr(s0.ravel(), s1.ravel())[0], abs=1e-5
            )
            assert got["ssim"] == pytest.approx(exp_ssim, abs=1e-4)


def test_identical_maps_give_similarity_one_at_every_step():
    model = H.tiny_bn_net()
    x, t = H.images(2), torch.tensor([0, 1])
    for order in ("cascading", "independent"):
        out, _ = _run(ModelRandomisation(order=order, hog_cell=8), model, InputOnly(), x, t)
        for s, curve in out.curves.items():
            torch.testing.assert_close(curve, torch.ones_like(curve), atol=1e-5, rtol=0, msg=s)


def test_cascading_first_step_equals_independent_first_step_and_orders_differ():
    model = H.tiny_bn_net()
    x, t = H.images(3), torch.tensor([0, 1, 2])
    kw = dict(similarities=["spearman_abs"], target="label")
    casc, _ = _run(ModelRandomisation(order="cascading", **kw), model, H.SignedGradient(), x, t)
    ind, _ = _run(ModelRandomisation(order="independent", **kw), model, H.SignedGradient(), x, t)
    c, i = casc.curves["spearman_abs"], ind.curves["spearman_abs"]
    torch.testing.assert_close(c[:, 0], i[:, 0])
    assert not torch.allclose(c[:, -1], i[:, -1])


def test_target_rules_explain_the_right_class():
    model = H.tiny_bn_net(num_classes=4)
    x = H.images(6)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    pred = model(x).argmax(1)
    for rule in ("label", "original_prediction", "current_prediction"):
        rec = Recorder()
        metric = ModelRandomisation(target=rule, similarities=["spearman_abs"])
        _run(metric, model, rec, x, labels)
        calls = rec.calls[1:]  # the first call is the run's own map in _run
        assert len(calls) == 1 + 5
        expect0 = labels if rule == "label" else pred
        assert torch.equal(calls[0], expect0)
        if rule == "current_prediction":
            from bench.metrics.randomisation import randomised_models

            names = randomisation_layers(model)
            for call, rand in zip(calls[1:], randomised_models(model, names, seed=1)):
                assert torch.equal(call, rand(x).argmax(1))
        else:
            assert all(torch.equal(c, expect0) for c in calls[1:])


def test_model_randomisation_is_batch_size_invariant():
    model = H.tiny_bn_net()
    x, t = H.images(4), torch.tensor([0, 1, 2, 0])
    metric = ModelRandomisation(hog_cell=8)
    full, _ = _run(metric, model, H.SignedGradient(), x, t)
    a, _ = _run(metric, model, H.SignedGradient(), x[:2], t[:2])
    b, _ = _run(metric, model, H.SignedGradient(), x[2:], t[2:])
    for s in full.curves:
        torch.testing.assert_close(full.curves[s], torch.cat([a.curves[s], b.curves[s]]))


def test_constant_maps_are_flagged():
    class Zero(Method):
        def attribute(self, model, images, targets):
            return torch.zeros(images.shape[0], *images.shape[-2:])

    model = H.tiny_bn_net()
    x, t = H.images(2), torch.tensor([0, 1])
    out, _ = _run(ModelRandomisation(similarities=["spearman_abs"]), model, Zero(), x, t)
    assert out.scores["spearman_abs"].isnan().all() and out.flags["spearman_abs"].all()
    out, _ = _run(EfficientMPRT(), model, Zero(), x, t)
    assert out.scores[""].isnan().all() and out.flags[""].all()


# ------------------------------------------------------------------ the other checks


def test_efficient_mprt_equals_numpy_histogram_entropy_of_the_fully_randomised_model():
    model = H.tiny_bn_net()
    x, t = H.images(4), torch.tensor([0, 1, 2, 0])
    method = H.gradient()
    out, _ = _run(EfficientMPRT(), model, method, x, t, seed=3)
    rand = copy.deepcopy(model)
    for name in randomisation_layers(model):
        randomise_layer(rand, name, seed=4)
    h = lambda m: np.array([scipy.stats.entropy(np.histogram(a, bins=100)[0]) for a in m])  # noqa: E731
    h0, h1 = h(method(model, x, t).numpy()), h(method(rand, x, t).numpy())
    np.testing.assert_allclose(out.scores[""].numpy(), (h1 - h0) / h0, atol=1e-10)
    np.testing.assert_allclose(out.scores["entropy_original"].numpy(), h0, atol=1e-12)
    np.testing.assert_allclose(out.scores["entropy_randomised"].numpy(), h1, atol=1e-12)
    # the headline score against the two entropies it reports, with its sign: a rise is positive
    parts = out.scores["entropy_original"], out.scores["entropy_randomised"]
    torch.testing.assert_close(out.scores[""], (parts[1] - parts[0]) / parts[0])
    assert ((out.scores[""] > 0) == (parts[1] > parts[0])).all() and (h1 != h0).all()
    assert EfficientMPRT.higher_is_better and not ModelRandomisation.higher_is_better


def test_smooth_mprt_averages_noisy_maps_and_reduces_to_mprt_without_noise():
    model = H.tiny_bn_net()
    x, t = H.images(3), torch.tensor([0, 1, 2])
    keys = dict(similarities=["spearman_abs"], target="label", normalise="max")
    plain, _ = _run(ModelRandomisation(direction="bottom_up", **keys), model, H.gradient(), x, t)
    quiet, _ = _run(
        SmoothMPRT(noise_samples=4, noise_magnitude=0.0, **keys), model, H.gradient(), x, t
    )
    torch.testing.assert_close(quiet.curves["spearman_abs"], plain.curves["spearman_abs"])
    smooth = SmoothMPRT(noise_samples=5, noise_magnitude=0.2, **keys)
    ctx = H.context(model, H.gradient(), seed=5, chunk_size=7)  # chunking splits the 5 x 3 maps
    got = smooth.explain(ctx, model, x, t)
    std = 0.2 * (x.flatten(1).amax(1) - x.flatten(1).amin(1))[:, None, None, None]
    keys = content_keys(x, 5 + smooth.noise_offset)  # draw k of an image: (seed, content, k)
    draws = [
        keyed_normal(keys, torch.full_like(keys, k), x[0].numel()).view_as(x) for k in range(4)
    ]
    maps = [H.gradient()(model, x + z * std, t) for z in draws]
    maps.append(H.gradient()(model, x, t))
    torch.testing.assert_close(got, torch.stack(maps).mean(0), rtol=1e-5, atol=1e-7)


def test_random_logit_draws_other_classes_uniformly_and_compares_their_maps():
    model = H.tiny_bn_net(num_classes=4)
    metric = RandomLogit(similarities=["spearman_abs", "spearman_signed"])
    ctx = H.context(model, H.SignedGradient(), seed=0)
    targets = torch.arange(4).repeat(500)
    many = torch.randn(2000, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    other = metric.other_classes(ctx, many, targets, 4)
    assert not (other == targets).any()
    counts = torch.bincount(other[targets == 0], minlength=4)[1:].float()
    assert counts.min() > 130  # ~167 each of the 3 other classes
    x, t = H.images(3), torch.tensor([0, 1, 2])
    out, _ = _run(metric, model, H.SignedGradient(), x, t)
    oc = metric.other_classes(H.context(model, None), x, t, 4)
    for i in range(3):  # keyed by the image: the same class drawn for it alone
        alone = metric.other_classes(H.context(model, None), x[i : i + 1], t[i : i + 1], 4)
        assert alone.item() == oc[i].item()
    expect = metric.similarity(H.SignedGradient()(model, x, t), H.SignedGradient()(model, x, oc))
    for s in out.scores:
        torch.testing.assert_close(out.scores[s], expect[s].float())
    same, _ = _run(
        RandomLogit(similarities=["spearman_abs"]),
        model,
        type("ClassFree", (Method,), {"attribute": lambda s, m, i, t: i.sum(1)})(),
        x,
        t,
    )
    torch.testing.assert_close(same.scores["spearman_abs"], torch.ones(3))


def test_data_randomisation_compares_with_the_checkpoint_model(tmp_path):
    model = H.tiny_bn_net(seed=0)
    other = H.tiny_bn_net(seed=1)
    torch.save({"state_dict": other.state_dict()}, tmp_path / "other.pt")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "same.pt")
    x, t = H.images(3), torch.tensor([0, 1, 2])
    keys = dict(target="label", hog_cell=8)
    out, _ = _run(
        DataRandomisation(str(tmp_path / "other.pt"), **keys), model, H.SignedGradient(), x, t
    )
    metric = DataRandomisation(str(tmp_path / "other.pt"), **keys)
    expect = metric.similarity(H.SignedGradient()(model, x, t), H.SignedGradient()(other, x, t))
    for s in out.scores:
        torch.testing.assert_close(out.scores[s], expect[s].float())
    same, _ = _run(
        DataRandomisation(str(tmp_path / "same.pt"), **keys), model, H.SignedGradient(), x, t
    )
    for s in same.scores:
        torch.testing.assert_close(same.scores[s], torch.ones(3), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="missing.pt not found"):
        DataRandomisation(str(tmp_path / "missing.pt"))


def test_bad_keys_and_missing_method_are_user_errors():
    with pytest.raises(ConfigError, match="order=cascade.*accepted: cascading, independent"):
        ModelRandomisation(order="cascade")
    with pytest.raises(ConfigError, match="similarities=pearson"):
        ModelRandomisation(similarities=["pearson"])
    with pytest.raises(ConfigError, match="target=prediction"):
        RandomLogit(target="prediction")
    with pytest.raises(ConfigError, match="batchnorm=none"):
        EfficientMPRT(batchnorm="none")
    model = H.tiny_bn_net()
    x, t = H.images(2), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="re-run the attribution method"):
        ModelRandomisation()(H.context(model, None), H.batch_of(x, t), torch.zeros(2, 32, 32))


def test_metadata_and_configs():
    for cls in (ModelRandomisation, SmoothMPRT, EfficientMPRT, DataRandomisation, RandomLogit):
        assert cls.category == "sanity" and cls.citation
    cfg = compose(f"metric=[{','.join(MY_CONFIGS)}]")  # one node each, none merged
    assert sorted(cfg.metric) == sorted(MY_CONFIGS)
    for name in MY_CONFIGS:
        metric = instantiate(cfg.metric[name])
        assert metric.settings()


# ------------------------------------------------------------------ the trained model


@pytest.fixture(scope="module")
def shapes():
    model = load_shapes_cnn(SHAPES_CKPT)
    ds = ShapesDataset("test", size=4)
    batch = collate([ds[i] for i in range(4)])
    return model, batch


@pytest.mark.parametrize(
    "method", [H.gradient(), GradCAM("features.3")], ids=["gradient", "gradcam"]
)
def test_trained_model_maps_change_under_cascading_randomisation(shapes, method):
    model, batch = shapes
    ctx = H.context(model, method)
    # the reference's class rule: with the fixed label, Grad-CAM maps of randomised models are often
    # all zero (no positive evidence for that class), i.e. NaN rank correlations (see the findings)
    metric = ModelRandomisation(
        order="cascading", target="current_prediction", similarities=["spearman_abs"]
    )
    out = metric(ctx, batch, method(model, batch.images, batch.targets))
    # an unrandomised copy gives the same map: rank correlation 1
    pred = model(batch.images).argmax(1)
    copy_maps = method(copy.deepcopy(model), batch.images, pred)
    unrandomised = metric.similarity(method(model, batch.images, pred), copy_maps)["spearman_abs"]
    torch.testing.assert_close(unrandomised, torch.ones(4, dtype=torch.float64))
    final = out.curves["spearman_abs"][:, -1]
    assert final.isfinite().all() and final.mean() < 0.5, final
    assert out.scores["spearman_abs"].nanmean() < 0.75


@pytest.mark.skipif(not (ROOT / SHUFFLED_CKPT).is_file(), reason="no permuted-label checkpoint")
def test_data_randomisation_config_runs_on_the_trained_model(shapes):
    model, batch = shapes
    metric = instantiate(compose("metric=[data_randomisation]").metric.data_randomisation)
    method = H.gradient()
    out = metric(H.context(model, method), batch, method(model, batch.images, batch.targets))
    assert set(out.scores) == {"spearman_abs", "spearman_signed", "ssim", "hog"}
    assert out.scores["spearman_abs"].nanmean() < 0.9


def test_smooth_mprt_noise_of_an_image_does_not_depend_on_its_batch():
    """The noisy copies of an image are keyed by its content: its smoothed map (and so its score)
    is the same alone, in a batch, in another order, at another chunk size."""
    model = H.tiny_bn_net()
    x, t = H.images(3), torch.tensor([0, 1, 2])
    smooth = SmoothMPRT(noise_samples=4, noise_magnitude=0.2, similarities=["spearman_abs"])
    both = smooth.explain(H.context(model, H.gradient(), seed=5), model, x, t)
    for i in range(3):
        ctx = H.context(model, H.gradient(), seed=5, chunk_size=2)
        alone = smooth.explain(ctx, model, x[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(alone, both[i : i + 1], rtol=1e-5, atol=1e-7)
    order = torch.tensor([2, 0, 1])
    moved = smooth.explain(H.context(model, H.gradient(), seed=5), model, x[order], t[order])
    torch.testing.assert_close(moved, both[order], rtol=1e-5, atol=1e-7)
