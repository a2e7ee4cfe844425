"""Deletion / insertion, the Gomez variant (DAUC, IAUC, DC, IC) and MoRF / LeRF pixel flipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate

from bench import ROOT
from bench.core.errors import ConfigError
from bench.metrics.faithfulness import (
    DAUC,
    DC,
    IAUC,
    IC,
    Deletion,
    Insertion,
    LeRF,
    MoRF,
    PixelFlippingABC,
    rise_blur_kernel,
)
from tests.metrics._faith_helpers import RegionMean, distinct_maps, make_batch, make_ctx, tiny_cnn

H = W = 8
RHO = 16 / 64


def oracle_case(b: int = 2):
    """The §7 oracle: R = a 4x4 block (rho = 1/4), image 1 on R and 0 elsewhere, f = mean over R."""
    region = torch.zeros(H, W)
    region[2:6, 4:8] = 1  # aligned to 2x2 and 4x4 tiles
    images = region.expand(b, 3, H, W).clone()
    # a map that ranks R first, with distinct values inside and outside R
    maps = region * 2 + distinct_maps(b, H, W, seed=3)
    return RegionMean(region), make_batch(images), maps


ORACLE_FIRST = [  # (metric, AUC when the map ranks R first)
    (Deletion(step=4, score="logit", target="label"), RHO / 2),
    (Insertion(step=4, substrate="zero", score="logit", target="label"), 1 - RHO / 2),
    (MoRF(step=4, score="logit"), RHO / 2),
    (MoRF(patch_size=2, step=1, score="logit"), RHO / 2),
    (LeRF(step=4, score="logit"), 1 - RHO / 2),
    (PixelFlippingABC(step=4, score="logit"), 1 - RHO),
    (DAUC(max_steps=16, score="logit"), RHO / 2),
    (IAUC(max_steps=16, substrate="zero", score="logit"), 1 - RHO / 2),
]


@pytest.mark.parametrize(("metric", "expected"), ORACLE_FIRST, ids=lambda v: type(v).__name__)
def test_analytic_oracle_exact(metric, expected):
    model, batch, maps = oracle_case()
    out = metric(make_ctx(model), batch, maps)
    assert torch.allclose(out.scores[""], torch.full((2,), expected), atol=1e-6)


def test_oracle_reversed_map_and_random_maps():
    model, batch, maps = oracle_case()
    ctx = make_ctx(model)
    deletion = Deletion(step=4, score="logit", target="label")
    assert torch.allclose(
        deletion(ctx, batch, -maps).scores[""], torch.full((2,), 1 - RHO / 2), atol=1e-6
    )
    insertion = Insertion(step=4, substrate="zero", score="logit", target="label")
    assert torch.allclose(
        insertion(ctx, batch, -maps).scores[""], torch.full((2,), RHO / 2), atol=1e-6
    )
    # random maps: E[AUC] = 0.5 for both (f falls / rises linearly in expectation)
    _, big, _ = oracle_case(b=96)
    rand = torch.rand(96, H, W, generator=torch.Generator().manual_seed(0))
    assert abs(deletion(ctx, big, rand).scores[""].mean().item() - 0.5) < 0.04
    assert abs(insertion(ctx, big, rand).scores[""].mean().item() - 0.5) < 0.04
    # the curve itself: 1 - k * step / |R| while R is being removed, then 0
    curve = deletion(ctx, batch, maps).curves[""][0]
    expected = torch.clamp(1 - torch.arange(17) * 4 / 16, min=0)
    assert torch.allclose(curve, expected, atol=1e-6)


ALL_CURVE_METRICS = [
    Deletion(step=5),
    Insertion(step=5),
    DAUC(),
    IAUC(),
    DC(max_steps=12),
    IC(max_steps=12),
    MoRF(step=3),
    LeRF(patch_size=2, step=2, fill="min"),
    PixelFlippingABC(step=7, fill="mean"),
]


@pytest.mark.parametrize("metric", ALL_CURVE_METRICS, ids=lambda m: type(m).__name__)
def test_monotone_transform_and_chunking_leave_scores_unchanged(metric):
    model = tiny_cnn()
    images = torch.randn(3, 3, H, W, generator=torch.Generator().manual_seed(1))
    batch = make_batch(images, targets=torch.tensor([0, 1, 2]))
    maps = distinct_maps(3, H, W) - 0.3
    ref = metric(make_ctx(model, chunk_size=1000), batch, maps)
    # pixel ranks are invariant to a strictly increasing transform; tile means and DC/IC's
    # per-step saliency values are not, so those only get the chunking check
    rank_only = not isinstance(metric, DC | IC) and getattr(metric, "patch_size", 1) == 1
    cases = [(maps, 7)] + ([(torch.exp(3 * maps) + maps**3, 1000)] if rank_only else [])
    for other_maps, chunk in cases:
        out = metric(make_ctx(model, chunk_size=chunk), batch, other_maps)
        for key, value in ref.scores.items():
            assert torch.allclose(out.scores[key], value, atol=1e-6), key
    # one image at a time gives the same scores as the batch
    single = metric(make_ctx(model), make_batch(images[1:2], torch.tensor([1])), maps[1:2])
    for key, value in ref.scores.items():
        assert torch.allclose(single.scores[key], value[1:2], atol=1e-6), key


def naive_rise_curve(model, image, smap, step, substrate, insertion):
    """RISE's reference loop (eclique/RISE CausalMetric), one image, numpy ordering."""
    n = image.shape[-1] * image.shape[-2]
    n_steps = (n + step - 1) // step
    order = np.argsort(-smap.numpy().reshape(-1), kind="stable")
    start, finish = (
        (substrate.clone(), image.clone()) if insertion else (image.clone(), substrate.clone())
    )
    with torch.no_grad():
        c = model(image[None]).argmax(1).item()
        scores = []
        for i in range(n_steps + 1):
            scores.append(model(start[None]).softmax(1)[0, c].item())
            if i < n_steps:
                coords = order[step * i : step * (i + 1)]
                start.view(3, -1)[:, coords] = finish.view(3, -1)[:, coords]
    scores = np.array(scores)
    return scores, (scores.sum() - scores[0] / 2 - scores[-1] / 2) / n_steps


def test_rise_kernel_constants():
    k = rise_blur_kernel()
    assert k.shape == (11, 11) and math.isclose(k.sum().item(), 1.0, rel_tol=1e-6)
    assert abs(k[5, 5].item() - 0.00883) < 1e-5 and abs(k[0, 0].item() - 0.00774) < 1e-5


def test_deletion_insertion_match_reference_loop():
    model = tiny_cnn()
    images = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    maps = distinct_maps(2, 6, 6, seed=5)
    batch = make_batch(images)
    kernel = rise_blur_kernel().numpy()
    for metric, insertion in ((Deletion(step=5), False), (Insertion(step=5), True)):
        out = metric(make_ctx(model, chunk_size=4), batch, maps)
        assert out.curves[""].shape == (2, math.ceil(36 / 5) + 1)
        for i in range(2):
            if insertion:  # independent blur: scipy correlate, zero padding
                sub = torch.from_numpy(
                    np.stack([correlate(c, kernel, mode="constant") for c in images[i].numpy()])
                )
            else:
                sub = torch.zeros_like(images[i])
            curve, auc = naive_rise_curve(model, images[i], maps[i], 5, sub.float(), insertion)
            assert np.allclose(out.curves[""][i].numpy(), curve, atol=1e-5)
            assert abs(out.scores[""][i].item() - auc) < 1e-5


def naive_gomez(model, image, grid, max_steps, insertion, target):
    """saliency-maps-metrics' MultiStepMetric loop for one image (map on its native grid)."""
    h, w = image.shape[-2:]
    gh, gw = grid.shape
    total = gh * gw
    per = total // min(max_steps, total)
    if insertion:
        size = max(h // 5, 9)
        size += size % 2 == 0
        box = np.ones((size, size)) / size**2
        sub = torch.from_numpy(
            np.stack([correlate(c, box, mode="constant") for c in image.numpy()])
        ).float()
        data1, data2 = sub, image
    else:
        data1, data2 = image, torch.zeros_like(image)
    order = np.argsort(-grid.numpy().reshape(-1), kind="stable")
    with torch.no_grad():
        scores = [model(data1[None]).softmax(1)[0, target].item()]
        sal, k = [], 0
        while k < total:
            k = min(k + per, total)
            mask = np.ones(total)
            mask[order[:k]] = 0
            mask = np.kron(mask.reshape(gh, gw), np.ones((h // gh, w // gw)))
            mask = torch.from_numpy(mask).float()
            masked = data1 * mask + data2 * (1 - mask)
            scores.append(model(masked[None]).softmax(1)[0, target].item())
            sal.append(
                grid.numpy().reshape(-1)[order[k - per if k % per == 0 else k - k % per : k]].mean()
            )
    scores = np.array(scores)
    auc = np.trapezoid(scores, np.arange(len(scores)) / (len(scores) - 1))
    var = scores[1:] - scores[:-1] if insertion else scores[:-1] - scores[1:]
    return scores, auc, np.corrcoef(var, np.array(sal))[0, 1]


@pytest.mark.parametrize("max_steps", [8, 5])
@pytest.mark.parametrize(
    "offset", [0.0, 1.0]
)  # off zero: a partial last step's mean is not its sum
def test_gomez_metrics_match_package_loop(max_steps, offset):
    model = tiny_cnn()
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(4))
    grids = distinct_maps(2, 4, 4, seed=6) + offset
    maps = grids.repeat_interleave(2, 1).repeat_interleave(2, 2)  # a 4x4 map upsampled nearest
    batch = make_batch(images)
    ctx = make_ctx(model, chunk_size=5)
    preds = model(images).argmax(1)
    for auc_cls, corr_cls, insertion in ((DAUC, DC, False), (IAUC, IC, True)):
        auc = auc_cls(max_steps=max_steps, map_size=[4, 4])(ctx, batch, maps)
        corr = corr_cls(max_steps=max_steps, map_size=4)(ctx, batch, maps)
        for i in range(2):
            curve, ref_auc, ref_corr = naive_gomez(
                model, images[i], grids[i], max_steps, insertion, preds[i]
            )
            assert np.allclose(auc.curves[""][i].numpy(), curve, atol=1e-5)
            assert abs(auc.scores[""][i].item() - ref_auc) < 1e-5
            assert abs(corr.scores[""][i].item() - ref_corr) < 1e-4
    assert auc_cls.higher_is_better and not DAUC.higher_is_better


def naive_flipping(model, image, smap, patch, step, fill, target, lerf):
    h, w = smap.shape
    tiles = smap.numpy().reshape(h // patch, patch, w // patch, patch).mean((1, 3)).reshape(-1)
    order = np.argsort(tiles if lerf else -tiles, kind="stable")
    x = image.clone()
    n_steps = math.ceil(len(tiles) / step)
    with torch.no_grad():
        scores = [model(x[None]).softmax(1)[0, target].item()]
        for i in range(n_steps):
            for t in order[i * step : (i + 1) * step]:
                r, c = divmod(int(t), w // patch)
                x[:, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = fill
            scores.append(model(x[None]).softmax(1)[0, target].item())
    s = np.array(scores)
    return s, (s.sum() - s[0] / 2 - s[-1] / 2) / n_steps


@pytest.mark.parametrize(("patch", "step", "fill"), [(1, 5, 0.0), (2, 3, "min"), (4, 1, -0.5)])
def test_pixel_flipping_matches_reference_loop(patch, step, fill):
    model = tiny_cnn()
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(7))
    maps = distinct_maps(2, H, W, seed=8)
    targets = torch.tensor([2, 0])
    batch = make_batch(images, targets)
    ctx = make_ctx(model, chunk_size=6)
    morf = MoRF(patch_size=patch, step=step, fill=fill)(ctx, batch, maps)
    lerf = LeRF(patch_size=patch, step=step, fill=fill)(ctx, batch, maps)
    before = ctx.forward_images
    abc = PixelFlippingABC(patch_size=patch, step=step, fill=fill)(ctx, batch, maps)
    assert ctx.forward_images == before  # both orders kept from the two metrics above
    fresh = PixelFlippingABC(patch_size=patch, step=step, fill=fill)(
        make_ctx(model, chunk_size=6), batch, maps
    )
    assert torch.equal(fresh.scores[""], abc.scores[""])
    for i in range(2):
        value = images[i].min().item() if fill == "min" else fill
        for out, is_lerf in ((morf, False), (lerf, True)):
            curve, auc = naive_flipping(
                model, images[i], maps[i], patch, step, value, targets[i], is_lerf
            )
            assert np.allclose(out.curves[""][i].numpy(), curve, atol=1e-5)
            assert abs(out.scores[""][i].item() - auc) < 1e-5
    assert torch.allclose(abc.scores[""], lerf.scores[""] - morf.scores[""], atol=1e-6)
    assert torch.allclose(abc.curves["morf"], morf.curves[""]) and torch.allclose(
        abc.curves["lerf"], lerf.curves[""]
    )


def test_dc_flags_constant_curves():
    model, batch, _ = oracle_case()
    flat = torch.ones(
        2, H, W
    )  # constant map -> constant per-step saliency -> correlation undefined
    out = DC(score="logit")(make_ctx(model), batch, flat)
    assert out.flags[""].all() and out.scores[""].isnan().all()


def test_bad_settings_raise_config_errors():
    for make in (
        lambda: Deletion(substrate="black"),
        lambda: Insertion(blur_size=10),
        lambda: Deletion(step=0),
        lambda: DAUC(score="prob"),
        lambda: IAUC(map_size=[0, 3]),
        lambda: MoRF(fill="black"),
        lambda: LeRF(patch_size=0),
        lambda: PixelFlippingABC(target="labels"),
    ):
        with pytest.raises(ConfigError):
            make()
    model, batch, maps = oracle_case()
    with pytest.raises(ValueError, match="patch_size"):
        MoRF(patch_size=3)(make_ctx(model), batch, maps)


MY_CONFIGS = [
    "deletion",
    "insertion",
    "dauc",
    "iauc",
    "dc",
    "ic",
    "pixel_flipping_morf",
    "pixel_flipping_lerf",
    "pixel_flipping_abc",
    "road_morf",
    "road_lerf",
    "road_abc",
    "infidelity",
    "max_sensitivity",
]


def test_configs_declare_their_package_and_instantiate_with_metadata():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from bench.config.schema import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=[f"metric=[{','.join(MY_CONFIGS)}]"])
    assert sorted(cfg.metric) == sorted(MY_CONFIGS)
    for name in MY_CONFIGS:
        metric = instantiate(cfg.metric[name])
        meta = metric.meta()
        assert meta["category"] and meta["citation"] and isinstance(meta["higher_is_better"], bool)
        assert metric.settings(), name
    road = instantiate(cfg.metric.road_abc)
    assert road.mean == list(cfg.model.mean) and road.std == list(cfg.model.std)
