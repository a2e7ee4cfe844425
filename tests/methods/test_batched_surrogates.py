"""Batched LIME and kernel SHAP: the packages' coefficients on the packages' own samples, shap's
blur, batch invariance, the contract and the errors."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from bench.core.errors import ConfigError
from bench.methods.perturbation import probabilities
from bench.methods.superpixel import BatchedKernelShap, BatchedLime, KernelShap, superpixels
from bench.methods.surrogate import (
    box_blur,
    cosine_distance_to_ones,
    kernel_shap_coalitions,
    kernel_shap_fit,
    kernel_shap_underdetermined,
    lime_coalitions,
    lime_kernel,
    ridge_fit,
)


class Probe(nn.Module):
    """A small CNN whose class probabilities move visibly when superpixels are hidden."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 5, padding=2)
        self.head = nn.Linear(6 * 4, 4)
        with torch.no_grad():
            self.head.weight.mul_(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.adaptive_avg_pool2d(self.conv(x).relu(), 2).flatten(1))


@pytest.fixture(scope="module")
def probe() -> nn.Module:
    return Probe().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Three smooth 24 x 24 images (blobs, so SLIC finds several superpixels)."""
    gen = torch.Generator().manual_seed(3)
    coarse = torch.randn(3, 3, 4, 4, generator=gen)
    fine = nn.functional.interpolate(coarse, size=(24, 24), mode="bicubic", align_corners=False)
    return 2 * fine + 0.05 * torch.randn(3, 3, 24, 24, generator=gen)


TARGETS = torch.tensor([0, 1, 2])


def _pad(rows: list[np.ndarray]) -> torch.Tensor:
    """Stack ``[S_i, M_i]`` arrays into ``[B, max S, max M]`` with zeros."""
    out = np.zeros((len(rows), max(r.shape[0] for r in rows), max(r.shape[1] for r in rows)))
    for i, r in enumerate(rows):
        out[i, : r.shape[0], : r.shape[1]] = r
    return torch.from_numpy(out)


# --------------------------------------------------------------------------------- (1) solvers


def _lime_run(image: np.ndarray, segments: np.ndarray, label: int, seed: int) -> dict:
    """lime's own samples, values, distances and coefficients for one image (its whole
    ``explain_instance``, with the regression's inputs recorded on the way)."""
    from lime import lime_image

    gen = np.random.RandomState(7)
    proj = gen.randn(image.size // image.shape[-1] * 3, 4) * 0.02

    def classify(batch: np.ndarray) -> np.ndarray:
        logits = batch.reshape(len(batch), -1) @ proj
        logits = logits + np.sin(3 * logits)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=seed)
    seen = {}
    original = explainer.base.explain_instance_with_data

    def spy(data, labels, distances, label, num_features, **kwargs):
        seen.update(data=data.copy(), values=labels[:, label].copy(), distances=distances.copy())
        return original(data, labels, distances, label, num_features, **kwargs)

    explainer.base.explain_instance_with_data = spy
    exp = explainer.explain_instance(
        image,
        classify,
        labels=(label,),
        top_labels=None,
        hide_color=0.0,
        num_samples=80,
        batch_size=80,
        segmentation_fn=lambda _img: segments,
    )
    coef = np.zeros(segments.max() + 1)
    for feature, w in exp.local_exp[label]:
        coef[feature] = w
    kernel = explainer.base.kernel_fn
    return {**seen, "coef": coef, "intercept": exp.intercept[label], "kernel": kernel}


def test_lime_weights_and_ridge_equal_limes_on_limes_samples(images):
    hwc = images.permute(0, 2, 3, 1).double().numpy()
    seg = superpixels(images, 12, 10.0).numpy()
    runs = [_lime_run(hwc[i], seg[i], label=i, seed=i) for i in range(2)]
    counts = torch.tensor([r["data"].shape[1] for r in runs])
    assert len(set(counts.tolist())) == 2, "two images with different superpixel counts (padding)"
    masks = _pad([r["data"] for r in runs]) > 0
    d = cosine_distance_to_ones(masks, counts)
    for i, r in enumerate(runs):
        np.testing.assert_allclose(d[i].numpy(), r["distances"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            lime_kernel(d[i]).numpy(), r["kernel"](r["distances"]), atol=1e-12
        )
    weights = lime_kernel(d)
    values = torch.from_numpy(np.stack([r["values"] for r in runs]))
    coef, intercept = ridge_fit(masks, weights, values)
    for i, r in enumerate(runs):
        m = counts[i]
        assert np.abs(r["coef"]).max() > 1e-3  # a real fit, not zeros on both sides
        np.testing.assert_allclose(coef[i, :m].numpy(), r["coef"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(float(intercept[i]), r["intercept"], rtol=0, atol=1e-10)
        assert (coef[i, m:] == 0).all()


def _shap_run(m: int, n_samples: int, seed: int) -> dict:
    """``shap.KernelExplainer`` (``l1_reg=False``) on a nonlinear set function of ``m`` players; its
    samples, weights, values and phi."""
    import shap

    a = np.random.RandomState(seed).randn(m)

    def value(z: np.ndarray) -> np.ndarray:
        s = z @ a
        return 1 / (1 + np.exp(-s)) + 0.3 * z[:, 0] * z[:, 1]

    state = np.random.get_state()
    try:
        np.random.seed(seed)
        explainer = shap.KernelExplainer(value, np.zeros((1, m)))
        phi = explainer.shap_values(np.ones((1, m)), nsamples=n_samples, silent=True, l1_reg=False)
    finally:
        np.random.set_state(state)
    return {
        "masks": explainer.maskMatrix.copy(),
        "weights": explainer.kernelWeights.copy(),
        "values": np.asarray(explainer.ey)[:, 0].copy(),
        "fx": float(explainer.fx[0]),
        "f0": float(explainer.fnull[0]),
        "phi": np.asarray(phi).reshape(-1),
        "explainer": explainer,
    }


def test_kernel_shap_fit_equals_shaps_phi_on_shaps_samples():
    runs = [_shap_run(12, 150, seed=0), _shap_run(9, 120, seed=1), _shap_run(5, 100, seed=2)]
    counts = torch.tensor([len(r["phi"]) for r in runs])
    masks = _pad([r["masks"] for r in runs])
    weights = _pad([r["weights"][:, None] for r in runs])[..., 0]
    values = _pad([r["values"][:, None] for r in runs])[..., 0]
    fx = torch.tensor([r["fx"] for r in runs], dtype=torch.float64)
    f0 = torch.tensor([r["f0"] for r in runs], dtype=torch.float64)
    phi = kernel_shap_fit(masks, weights, values, fx, f0, counts)
    for i, r in enumerate(runs):
        m = counts[i]
        assert np.abs(r["phi"]).max() > 1e-2
        np.testing.assert_allclose(phi[i, :m].numpy(), r["phi"], rtol=0, atol=1e-10)
        assert (phi[i, m:] == 0).all()
    # one player: f(x) - f(empty), exactly
    one = kernel_shap_fit(
        torch.zeros(1, 0, 1), torch.zeros(1, 0), torch.zeros(1, 0), fx[:1], f0[:1]
    )
    assert float(one[0, 0]) == float(fx[0] - f0[0])


def test_kernel_shap_sampler_enumerates_shaps_rows_with_shaps_weights():
    keys = torch.tensor([11, 12, 13])
    counts = torch.tensor([12, 9, 5])
    masks, weights, valid = kernel_shap_coalitions(keys, counts, 150)
    for i, (m, n) in enumerate([(12, 150), (9, 120), (5, 100)]):
        r = _shap_run(m, n, seed=i)
        rows = int(valid[i].sum()) - 2
        assert rows == min(150, 2**m - 2)
        assert masks[i, 0, :m].all() and not masks[i, 1].any() and not masks[i, :, m:].any()
        fixed = r["explainer"].nsamplesAdded if m == 5 else _n_fixed(m, 150)
        np.testing.assert_array_equal(
            masks[i, 2 : 2 + fixed, :m].double().numpy(), r["masks"][:fixed]
        )
        np.testing.assert_allclose(
            weights[i, 2 : 2 + fixed].numpy(), r["weights"][:fixed], atol=1e-15
        )
        np.testing.assert_allclose(float(weights[i].sum()), r["weights"].sum(), atol=1e-12)
    assert masks[0, 2:].sum(-1).min() >= 1 and masks[0, 2:].sum(-1).max() <= 11


def _n_fixed(m: int, n_samples: int) -> int:
    from bench.methods.surrogate import shap_plan

    return len(shap_plan(m, n_samples).fixed)


def test_lime_sampler_is_limes_scheme():
    masks = lime_coalitions(torch.tensor([5, 6]), torch.tensor([10, 7]), 400)
    assert masks.shape == (2, 400, 10) and masks.dtype == torch.bool
    assert masks[:, 0, :7].all() and masks[0, 0].all() and not masks[1, :, 7:].any()
    share = masks[:, 1:].double().mean((1, 2)) * torch.tensor([1.0, 10 / 7])
    assert ((share - 0.5).abs() < 0.03).all(), share


# --------------------------------------------------------------------------------- end to end


def test_batched_kernel_shap_equals_the_shap_wrapper_when_every_coalition_is_enumerated(probe):
    gen = torch.Generator().manual_seed(0)
    x = nn.functional.interpolate(
        torch.randn(2, 3, 3, 3, generator=gen), size=(16, 16), mode="bilinear"
    )
    counts = superpixels(x, 8, 10.0).flatten(1).amax(1) + 1
    assert counts.min() >= 3 and counts.max() <= 9, counts  # 2^M - 2 <= n_samples
    targets = torch.tensor([1, 3])
    ref = KernelShap(n_samples=520, n_segments=8, blur_size=5)(probe, x, targets)
    got = BatchedKernelShap(n_samples=520, n_segments=8, blur_size=5)(probe, x, targets)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------------- (2) batching


class CountingOOM(nn.Module):
    """``model`` that fails like CUDA's allocator on a forward of more than ``limit`` images."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.sizes = model, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.sizes.append(len(x))
        return self.model(x)


@pytest.mark.parametrize("cls", [BatchedLime, BatchedKernelShap])
def test_a_map_does_not_depend_on_the_batch_or_the_chunks(cls, probe, images):
    make = lambda **kw: cls(n_samples=40, n_segments=12, **kw)  # noqa: E731
    batch = make(batch_size=None)(probe, images, TARGETS)
    assert batch.abs().max() > 1e-3
    singles = torch.cat([make()(probe, images[i : i + 1], TARGETS[i : i + 1]) for i in range(3)])
    reordered = make(batch_size=7)(probe, images.flip(0), TARGETS.flip(0)).flip(0)
    scale = batch.abs().max()
    torch.testing.assert_close(singles / scale, batch / scale, rtol=0, atol=1e-9)
    torch.testing.assert_close(reordered / scale, batch / scale, rtol=0, atol=1e-9)
    oom = CountingOOM(probe, limit=16)
    method = make(batch_size=64)
    halved = method(oom, images, TARGETS)
    assert method.batch_size == 16 and max(oom.sizes) == 16
    torch.testing.assert_close(halved / scale, batch / scale, rtol=0, atol=1e-9)
    counting = CountingOOM(probe, limit=10**6)
    auto = make(batch_size="auto")
    torch.testing.assert_close(
        auto(counting, images, TARGETS) / scale, batch / scale, rtol=0, atol=1e-9
    )
    assert auto.batch_size == "auto" and max(counting.sizes) == 64  # the CPU's cap


@pytest.mark.parametrize("cls", [BatchedLime, BatchedKernelShap])
def test_the_seed_changes_the_samples_and_only_the_seed(cls, probe, images):
    a, b, c = (
        cls(n_samples=30, n_segments=12, seed=s)(probe, images[:1], TARGETS[:1]) for s in (3, 3, 4)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------------- (3) contract


@pytest.mark.parametrize("cls", [BatchedLime, BatchedKernelShap])
def test_maps_are_float32_on_the_device_and_constant_on_each_superpixel(cls, probe, images):
    method = cls(n_samples=30, n_segments=12)
    maps = method(probe, images, TARGETS)
    assert maps.shape == (3, 24, 24) and maps.dtype == torch.float32
    assert maps.device == images.device
    seg = method.segments(images)
    for i in range(3):
        for label in seg[i].unique():
            values = maps[i][seg[i] == label]
            assert (values == values[0]).all()
        assert len(maps[i].unique()) > 1


def test_one_superpixel_gets_the_exact_shapley_value(probe, images):
    method = BatchedKernelShap(n_samples=20, blur_size=4)
    method.segments = lambda x: torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)
    maps = method(probe, images, TARGETS)
    with torch.no_grad():
        p = probabilities(probe, images)[torch.arange(3), TARGETS]
        p0 = probabilities(probe, box_blur(images, 4))[torch.arange(3), TARGETS]
    assert (p - p0).abs().min() > 1e-4
    torch.testing.assert_close(maps, (p - p0)[:, None, None].expand(3, 24, 24), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------- (4) blur


@pytest.mark.parametrize("size", [1, 4, 5, 16, 40])
def test_box_blur_equals_shaps_blur_masker(size, images):
    import shap

    x = images[:2, :, :, :20].float()  # 24 x 20, not square
    ours = box_blur(x, size)
    for i in range(2):
        hwc = x[i].permute(1, 2, 0).contiguous().numpy()
        masker = shap.maskers.Image(f"blur({size},{size})", shape=hwc.shape)
        theirs = masker(np.zeros(hwc.size, dtype=bool), hwc)[0][0]
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), theirs, rtol=0, atol=2e-6)
    if size > 1:
        assert not torch.allclose(ours, x)


# --------------------------------------------------------------------------------- (5) errors


@pytest.mark.parametrize(
    "cls,key,value,accepted",
    [
        (BatchedKernelShap, "fill", "inpaint_telea", "accepted: blur"),
        (BatchedKernelShap, "blur_size", 0, "accepted: an integer >= 1"),
        (BatchedKernelShap, "batch_size", 0, "accepted: auto, null"),
        (BatchedLime, "n_samples", 0, "accepted: an integer >= 1"),
        (BatchedLime, "kernel_width", 0, "accepted: a number > 0"),
        (BatchedLime, "hide_color", "grey", "accepted: a number"),
        (BatchedLime, "seed", "abc", "accepted: an integer"),
    ],
)
def test_bad_settings_name_the_key_the_value_and_the_accepted_values(cls, key, value, accepted):
    with pytest.raises(ConfigError) as err:
        cls(**{key: value})
    assert f"{key}={value}" in str(err.value) or f"{key}={value!r}" in str(err.value)
    assert accepted in str(err.value)


def test_kernel_shap_warns_when_its_coalitions_do_not_determine_the_values(probe, images):
    """Fewer distinct coalitions than superpixels: no unique solution, said once per run."""
    enumerated = torch.tensor(list(itertools.product([0, 1], repeat=4)))[1:-1].float()[None]
    weights = torch.ones(1, enumerated.shape[1])
    assert not kernel_shap_underdetermined(enumerated, weights).any()
    assert kernel_shap_underdetermined(enumerated[:, :2], weights[:, :2]).all()
    one = torch.tensor(
        [[[1.0, 0.0, 0.0, 0.0]]]
    )  # 2 superpixels (the rest padding): 1 row is enough
    assert not kernel_shap_underdetermined(one, torch.ones(1, 1), torch.tensor([2])).any()
    method = BatchedKernelShap(n_samples=6, n_segments=12)
    with pytest.warns(UserWarning, match="n_samples=6 coalitions do not determine"):
        method(probe, images[:2], TARGETS[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method(probe, images[:2], TARGETS[:2])  # once per run
        BatchedKernelShap(n_samples=400, n_segments=12)(probe, images[:1], TARGETS[:1])
    with pytest.warns(UserWarning, match="n_samples=6 coalitions do not determine"):
        KernelShap(n_samples=6, n_segments=12, blur_size=5)(probe, images[:1], TARGETS[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KernelShap(n_samples=400, n_segments=12, blur_size=5)(probe, images[:1], TARGETS[:1])
