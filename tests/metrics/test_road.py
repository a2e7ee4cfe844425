"""ROAD: the batched imputation solver against an exact sparse solve, and the metric against a loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix, csc_matrix, diags, lil_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

import bench.metrics.road as road
from bench.core.errors import ConfigError
from bench.core.rng import id_keys
from bench.metrics.road import (
    RoadABC,
    RoadLeRF,
    RoadMoRF,
    _Multigrid,
    _neighbour_sum,
    _prolong,
    _restrict,
    _stencil_apply,
    counter_normal,
    fraction_counts,
    image_keys,
    impute_linear,
)
from tests.metrics._faith_helpers import LinearModel, distinct_maps, make_batch, make_ctx, tiny_cnn

WEIGHTS = {
    (1, 1): 1 / 12,
    (0, 1): 1 / 6,
    (-1, 1): 1 / 12,
    (1, -1): 1 / 12,
    (0, -1): 1 / 6,
    (-1, -1): 1 / 12,
    (1, 0): 1 / 6,
    (-1, 0): 1 / 6,
}


def exact_imputation(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The reference system (tleemann/road_evaluation), built pixel by pixel, solved by spsolve."""
    c, h, w = img.shape
    idx = np.flatnonzero(removed)
    var = -np.ones(h * w, dtype=int)
    var[idx] = np.arange(len(idx))
    a = lil_matrix((len(idx), len(idx)))
    b = np.zeros((len(idx), c))
    flat = img.reshape(c, -1)
    for e, i in enumerate(idx):
        r0, c0 = divmod(int(i), w)
        total = 0.0
        for (dy, dx), wt in WEIGHTS.items():
            y, x = r0 + dy, c0 + dx
            if 0 <= y < h and 0 <= x < w:
                total += wt
                j = y * w + x
                if var[j] >= 0:
                    a[e, var[j]] -= wt
                else:
                    b[e] += wt * flat[:, j]
        a[e, e] += total
    sol = spsolve(csc_matrix(a), b).reshape(len(idx), c)
    out = flat.copy()
    out[:, idx] = sol.T
    return out.reshape(c, h, w)


def sparse_imputation(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The same system as :func:`exact_imputation`, assembled with array operations (fast at 112 px)."""
    c, h, w = img.shape
    flat = img.reshape(c, -1)
    idx = np.flatnonzero(removed)
    var = -np.ones(h * w, dtype=np.int64)
    var[idx] = np.arange(len(idx))
    r0, c0 = np.divmod(idx, w)
    rows, cols, vals = [], [], []
    diag, b = np.zeros(len(idx)), np.zeros((len(idx), c))
    for (dy, dx), wt in WEIGHTS.items():
        y, x = r0 + dy, c0 + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        diag[inside] += wt
        j = np.where(inside, y * w + x, 0)
        unknown, known = inside & (var[j] >= 0), inside & (var[j] < 0)
        rows.append(np.flatnonzero(unknown))
        cols.append(var[j[unknown]])
        vals.append(np.full(int(unknown.sum()), -wt))
        b[known] += wt * flat[:, j[known]].T
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(idx),) * 2
    )
    out = flat.copy()
    out[:, idx] = spsolve((a + diags(diag)).tocsc(), b).reshape(len(idx), c).T
    return out.reshape(c, h, w)


def blob(h: int, frac: float, w: int | None = None) -> torch.Tensor:
    w = h if w is None else w
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d = ((yy - h / 3) ** 2 + (xx - w / 2) ** 2).float().flatten()
    out = torch.zeros(h * w, dtype=torch.bool)
    out[d.argsort()[: int(frac * h * w)]] = True
    return out.view(h, w)


def test_batched_solver_matches_exact_sparse_solve():
    g = torch.Generator().manual_seed(0)
    cases = [
        (12, torch.rand(3, 12, 12, generator=g) < 0.5),
        (12, torch.rand(3, 12, 12, generator=g) < 0.9),
        (24, torch.stack([blob(24, 0.9), blob(24, 0.3), ~blob(24, 0.5)])),
    ]
    for h, removed in cases:
        images = torch.rand(3, 3, h, h, generator=g)
        out = impute_linear(images, removed)
        assert out.dtype == images.dtype
        for i in range(3):
            ref = exact_imputation(images[i].double().numpy(), removed[i].numpy())
            assert np.abs(out[i].double().numpy() - ref).max() < 1e-4
            kept = ~removed[i]
            assert torch.equal(out[i][:, kept], images[i][:, kept])


def test_imputation_hand_made_cases():
    img = torch.zeros(1, 1, 3, 3)
    img[0, 0] = torch.tensor([[0.0, 6.0, 0.0], [12.0, 24.0, 0.0], [0.0, 0.0, 0.0]])
    corner = torch.zeros(1, 3, 3, dtype=torch.bool)
    corner[0, 0, 0] = (
        True  # neighbours: right 6 (1/6), below 12 (1/6), diagonal 24 (1/12); renormalised
    )
    out = impute_linear(img, corner)
    assert abs(out[0, 0, 0, 0].item() - (6 / 6 + 12 / 6 + 24 / 12) / (5 / 12)) < 1e-6
    centre = torch.zeros(1, 3, 3, dtype=torch.bool)
    centre[0, 1, 1] = True
    img2 = torch.arange(9.0).view(1, 1, 3, 3)
    expected = sum(wt * img2[0, 0, 1 + dy, 1 + dx].item() for (dy, dx), wt in WEIGHTS.items())
    assert abs(impute_linear(img2, centre)[0, 0, 1, 1].item() - expected) < 1e-6


def test_counter_noise_is_standard_normal_and_keyed():
    keys = torch.tensor([1, 2, 1])
    z = counter_normal(0, keys, torch.zeros(3, dtype=torch.long), 20000)
    assert torch.equal(z[0], z[2]) and not torch.equal(z[0], z[1])
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert not torch.equal(
        z[0], counter_normal(1, keys[:1], torch.zeros(1, dtype=torch.long), 20000)[0]
    )
    assert not torch.equal(
        z[0], counter_normal(0, keys[:1], torch.ones(1, dtype=torch.long), 20000)[0]
    )


def test_fraction_counts_are_exact_floors():
    assert fraction_counts([0.1, 0.7, 0.9], 100) == [10, 70, 90]
    assert fraction_counts([0.3], 224 * 224) == [15052]


MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def naive_road(model, image, smap, target, fractions, lerf):
    """Per-image loop: exact sparse imputation in pixel space, no noise, then the model."""
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    pixels = (image * std + mean).double().numpy()
    m = smap.flatten()
    scaled = (m - m.min()) / (m.max() - m.min())
    order = np.argsort(scaled.numpy() if lerf else -scaled.numpy(), kind="stable")
    n = m.numel()
    correct, probs = [], []
    for p in fractions:
        removed = np.zeros(n, dtype=bool)
        removed[order[: int(np.floor(p * n + 1e-9))]] = True
        filled = torch.from_numpy(exact_imputation(pixels, removed.reshape(smap.shape))).float()
        with torch.no_grad():
            logits = model(((filled - mean) / std)[None])[0]
        correct.append(float(logits.argmax().item() == target))
        probs.append(logits.softmax(0)[target].item())
    return np.array(correct), np.array(probs)


def test_road_matches_reference_loop_without_noise():
    model = tiny_cnn()
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    maps = distinct_maps(2, 8, 8, seed=4)
    targets = torch.tensor([1, 2])  # not class 0: the reference returns class 0's probability
    batch = make_batch(images, targets)
    fractions = [0.1, 0.3, 0.5, 0.9]
    kwargs = dict(mean=MEAN, std=STD, fractions=fractions, noise=0.0, tie_noise=0.0)
    ctx = make_ctx(model, chunk_size=5)
    morf, lerf = RoadMoRF(**kwargs)(ctx, batch, maps), RoadLeRF(**kwargs)(ctx, batch, maps)
    abc = RoadABC(**kwargs)(make_ctx(model, chunk_size=5), batch, maps)  # computed afresh
    for i in range(2):
        for out, is_lerf in ((morf, False), (lerf, True)):
            correct, probs = naive_road(
                model, images[i], maps[i], int(targets[i]), fractions, is_lerf
            )
            assert np.allclose(out.curves[""][i].numpy(), correct)
            assert np.allclose(out.curves["probability"][i].numpy(), probs, atol=1e-4)
            assert abs(out.scores[""][i].item() - correct.mean()) < 1e-6
            assert abs(out.scores["probability"][i].item() - probs.mean()) < 1e-4
    assert torch.allclose(
        abc.scores["probability"],
        lerf.scores["probability"] - morf.scores["probability"],
        atol=1e-6,
    )
    assert torch.allclose(abc.curves["lerf"], lerf.curves[""]) and torch.allclose(
        abc.curves["morf"], morf.curves[""]
    )
    assert not RoadMoRF.higher_is_better and RoadLeRF.higher_is_better and RoadABC.higher_is_better


def test_road_noise_is_small_seeded_and_independent_of_batch_and_chunks():
    model = tiny_cnn()
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    maps = distinct_maps(3, 8, 8, seed=6)
    batch = make_batch(images, torch.tensor([0, 1, 2]), ids=["a", "b", "c"])
    metric = RoadABC(mean=MEAN, std=STD, fractions=[0.2, 0.6])
    ref = metric(make_ctx(model, chunk_size=100), batch, maps)
    again = metric(make_ctx(model, chunk_size=3), batch, maps)
    alone = metric(make_ctx(model), make_batch(images[2:], torch.tensor([2]), ids=["c"]), maps[2:])
    assert torch.allclose(ref.scores["probability"], again.scores["probability"], atol=1e-6)
    assert torch.allclose(alone.scores["probability"], ref.scores["probability"][2:], atol=1e-6)
    other_seed = metric(make_ctx(model, seed=1), batch, maps)
    assert not torch.equal(other_seed.curves["morf.probability"], ref.curves["morf.probability"])
    quiet = RoadABC(mean=MEAN, std=STD, fractions=[0.2, 0.6], noise=0.0)(
        make_ctx(model), batch, maps
    )
    assert (quiet.curves["morf.probability"] - ref.curves["morf.probability"]).abs().max() < 0.05


def test_bad_settings_raise_config_errors():
    for kwargs in (
        dict(fractions=[0.0, 0.5]),
        dict(fractions=[1.0]),
        dict(std=[0.2, 0.0, 0.3]),
        dict(solver_dtype="float16"),
        dict(target="labels"),
        dict(noise=-1.0),
        dict(check_every=0),
    ):
        with pytest.raises(ConfigError):
            RoadMoRF(**{"mean": MEAN, "std": STD, **kwargs})


def test_vectorised_reference_matches_pixel_by_pixel_reference():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(3, 9, 13, generator=g).double().numpy()
    removed = (torch.rand(9, 13, generator=g) < 0.7).numpy()
    assert np.abs(sparse_imputation(img, removed) - exact_imputation(img, removed)).max() < 1e-12


def worst_cases(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Masks that make the system hardest: one 90% blob, its complement, scattered 50/90/99%."""
    return torch.stack(
        [
            blob(h, 0.9, w),
            ~blob(h, 0.5, w),
            torch.rand(h, w, generator=g) < 0.5,
            torch.rand(h, w, generator=g) < 0.9,
            torch.rand(h, w, generator=g) < 0.99,
        ]
    )


@pytest.mark.parametrize("h,w", [(112, 112), (45, 70)])
def test_multigrid_solver_matches_sparse_solve_on_hard_masks(h, w):
    """Full-size worst cases (90% removed in one blob, scattered removal), even and odd sizes."""
    g = torch.Generator().manual_seed(2)
    removed = worst_cases(h, w, g)
    images = torch.rand(len(removed), 3, h, w, generator=g)
    out = impute_linear(
        images, removed, max_iter=30
    )  # size-independent convergence: 30 steps are plenty
    for i in range(len(removed)):
        ref = sparse_imputation(images[i].double().numpy(), removed[i].numpy())
        assert np.abs(out[i].double().numpy() - ref).max() < 1e-6  # measured 3e-7 (float32 output)
    assert torch.equal(
        out[~removed[:, None].expand_as(out)], images[~removed[:, None].expand_as(out)]
    )


def test_float32_solver_stays_close_and_blocks_do_not_change_results():
    g = torch.Generator().manual_seed(3)
    removed = worst_cases(40, 40, g)
    images = torch.rand(len(removed), 3, 40, 40, generator=g)
    exact = impute_linear(images, removed)
    assert (impute_linear(images, removed, dtype=torch.float32) - exact).abs().max() < 1e-3
    # Not bit for bit: a block's size picks the grid transfers' and stencils' code paths (equal in
    # exact arithmetic, rounded differently: _MATMUL_TRANSFER, _VIEW_APPLY), and each block stops
    # within ``tol`` of the exact solution; measured 6e-8 (one float32 ulp) on 356 of 24,000 values.
    torch.testing.assert_close(
        impute_linear(images, removed, block=1),
        impute_linear(images, removed, block=5),
        rtol=0,
        atol=1e-6,
    )
    assert torch.equal(impute_linear(images, torch.zeros_like(removed)), images)


@pytest.mark.parametrize("h,w", [(23, 18), (30, 31)])
def test_multigrid_is_galerkin_and_symmetric(h, w):
    """P^T is the restriction, each coarse stencil is P^T A P, and the V-cycle is an SPD operator."""
    g = torch.Generator().manual_seed(4)
    mask = (torch.rand(2, 1, h, w, generator=g) < 0.8).double()
    mg = _Multigrid(mask, _neighbour_sum(torch.ones(1, 1, h, w, dtype=torch.float64)))
    assert len(mg.masks) >= 3

    def rand(m: torch.Tensor) -> torch.Tensor:
        return torch.randn(m.shape[0], 3, *m.shape[-2:], generator=g, dtype=torch.float64) * m

    for lev in range(len(mg.masks) - 1):
        f, c = rand(mg.masks[lev]), rand(mg.masks[lev + 1])
        assert abs((mg.prolong(lev, c) * f).sum() - (c * mg.restrict(lev, f)).sum()) < 1e-10
        galerkin = mg.restrict(lev, mg.apply(lev, mg.prolong(lev, c)))
        assert (mg.apply(lev + 1, c) - galerkin).abs().max() < 1e-12
    r1, r2 = rand(mask), rand(mask)
    assert abs((mg(r1) * r2).sum() - (r1 * mg(r2)).sum()) < 1e-9
    assert (mg(r1) * r1).sum((2, 3)).min() > 0


def test_convergence_checks_every_k_iterations_do_not_change_the_imputation():
    """Systems freeze on the device at their own iteration, whatever ``check_every``."""
    g = torch.Generator().manual_seed(5)
    removed = torch.cat([worst_cases(24, 24, g), torch.rand(3, 24, 24, generator=g) < 0.2])
    images = torch.rand(len(removed), 3, 24, 24, generator=g)
    ref = impute_linear(images, removed, block=len(removed))
    for k in (2, 3, 7):
        assert torch.equal(impute_linear(images, removed, check_every=k, block=len(removed)), ref)
    ref32 = impute_linear(images, removed, dtype=torch.float32, block=len(removed))
    out32 = impute_linear(images, removed, 1e-7, 20000, 4, torch.float32, len(removed))
    assert torch.equal(out32, ref32)


def test_fused_level0_cycle_and_small_grid_paths_equal_the_plain_ones(monkeypatch):
    """The shortcut V-cycle at level 0, the strided-view stencils and the matrix-product grid
    transfers compute the same operators as the plain Jacobi cycle and the per-offset slices."""
    g = torch.Generator().manual_seed(6)
    mask = (torch.rand(2, 1, 30, 27, generator=g) < 0.7).double()
    mg = _Multigrid(mask, _neighbour_sum(torch.ones(1, 1, 30, 27, dtype=torch.float64)))
    r = torch.randn(2, 3, 30, 27, generator=g, dtype=torch.float64) * mask
    inv = mg.inv_diag[0]
    x = inv * r
    x = x + mg.prolong(0, mg(mg.restrict(0, r - mg.apply(0, x)), 1))
    x = x + inv * (r - mg.apply(0, x))
    assert (mg(r) - x).abs().max() < 1e-12
    for lev in range(len(mg.masks) - 1):
        m, mc = mg.masks[lev], mg.masks[lev + 1]
        c = torch.randn(2, 3, *mc.shape[-2:], generator=g, dtype=torch.float64) * mc
        f = torch.randn(2, 3, *m.shape[-2:], generator=g, dtype=torch.float64) * m
        assert (mg.prolong(lev, c) - _prolong(c, *m.shape[-2:]) * m).abs().max() < 1e-13
        assert (mg.restrict(lev, f) - _restrict(f, *mc.shape[-2:]) * mc).abs().max() < 1e-13
        if lev:
            small = _stencil_apply(mg.stencils[lev], f)
            monkeypatch.setattr(road, "_VIEW_APPLY", 0)
            assert (small - _stencil_apply(mg.stencils[lev], f)).abs().max() < 1e-13
            monkeypatch.setattr(road, "_VIEW_APPLY", 1 << 16)


def test_image_keys_are_per_image_and_road_scores_do_not_depend_on_the_batch():
    ids = ["img-0", "img-1", "img-2"]
    keys = image_keys(ids, "cpu")
    assert torch.equal(keys, id_keys(ids, "cpu"))  # the CRC-32 keys: committed scores unchanged
    assert torch.equal(image_keys(ids[::-1], "cpu"), keys.flip(0))
    assert len(set(keys.tolist())) == 3
    model = tiny_cnn()
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    maps = distinct_maps(3, 8, 8, seed=8)
    targets = torch.tensor([0, 1, 2])
    metric = RoadABC(mean=MEAN, std=STD, fractions=[0.3, 0.7], check_every=3)
    ref = metric(make_ctx(model), make_batch(images, targets, ids=ids), maps)
    flipped = metric(
        make_ctx(model), make_batch(images.flip(0), targets.flip(0), ids=ids[::-1]), maps.flip(0)
    )
    assert torch.equal(flipped.curves["morf.probability"], ref.curves["morf.probability"].flip(0))
    every = RoadABC(mean=MEAN, std=STD, fractions=[0.3, 0.7], check_every=1)
    same = every(make_ctx(model), make_batch(images, targets, ids=ids), maps)
    assert torch.equal(same.curves["lerf.probability"], ref.curves["lerf.probability"])


class Recording(nn.Module):
    """``model`` that keeps a copy of every input it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return self.model(x)


def test_the_road_metrics_of_a_job_share_each_orders_curves():
    """road_morf then road_abc on the same batch and maps: ABC imputes and forwards only LeRF,
    and every curve equals a fresh computation; other maps, settings or contexts start afresh.

    What the shared path and a fresh ``road_abc`` give the model is the same bit for bit; its
    curves are compared at 1e-6, not bit for bit, because the model is not batch-invariant: the
    shared path forwards MoRF's 9 images in one call, the fresh one MoRF's and LeRF's 18
    interleaved, and PyTorch's CPU convolutions block their sums by the batch size, so the same
    image's logits differ by a float32 ulp (1.2e-7 measured here) and its probability by ~6e-8
    (which made ``torch.equal`` fail). A sharing bug (the other order, stale curves, other
    noise) moves the curves by far more than 1e-6.
    """
    shared = Recording(tiny_cnn())
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    maps = distinct_maps(3, 8, 8, seed=10)
    batch = make_batch(images, torch.tensor([0, 1, 2]), ids=["a", "b", "c"])
    kwargs = dict(mean=MEAN, std=STD, fractions=[0.2, 0.5, 0.8])
    ctx = make_ctx(shared)
    morf = RoadMoRF(**kwargs)(ctx, batch, maps)
    assert ctx.forward_images == 3 * 3
    abc = RoadABC(**kwargs)(ctx, batch, maps)
    assert ctx.forward_images == 2 * 3 * 3  # LeRF's only
    RoadLeRF(**kwargs)(ctx, batch, maps)
    assert ctx.forward_images == 2 * 3 * 3  # both kept
    fresh_model = Recording(tiny_cnn())
    fresh = RoadABC(**kwargs)(make_ctx(fresh_model), batch, maps)
    # the model's inputs: [image, order, fraction] in the fresh job, one order a call when shared
    given_morf, given_lerf = shared.inputs
    both = torch.cat(fresh_model.inputs).view(3, 2, 3, 3, 8, 8)
    assert torch.equal(given_morf, both[:, 0].reshape(9, 3, 8, 8))
    assert torch.equal(given_lerf, both[:, 1].reshape(9, 3, 8, 8))
    for key in ("morf", "lerf", "morf.probability", "lerf.probability"):
        torch.testing.assert_close(abc.curves[key], fresh.curves[key], rtol=0, atol=1e-6, msg=key)
    torch.testing.assert_close(
        morf.curves["probability"], fresh.curves["morf.probability"], rtol=0, atol=1e-6
    )
    RoadMoRF(**kwargs, noise=0.02)(ctx, batch, maps)  # other settings
    assert ctx.forward_images == 3 * 3 * 3
    RoadMoRF(**kwargs)(ctx, batch, maps.flip(0))  # other maps
    assert ctx.forward_images == 4 * 3 * 3
    edited = maps.clone()
    RoadMoRF(**kwargs)(ctx, batch, edited)
    edited[0, 0, 0] += 1.0  # the same tensor changed in place
    RoadMoRF(**kwargs)(ctx, batch, edited)
    assert ctx.forward_images == 6 * 3 * 3


def test_every_road_score_equals_its_parts_with_the_sign_of_the_protocol():
    """ABC = LeRF − MoRF for both scores (accuracy and probability), each single score = its
    curve's mean, on a hand-made case where the two orders differ: a linear model whose class 0
    logit is the mean of the normalised image over a 4x4 region R (class 1's is 0), an image 1 on
    R and 0 elsewhere (pixel space), a map that ranks R first. Every fraction here removes all of
    R under MoRF (imputed from the zeros around it: class 1) and none of it under LeRF (class 0),
    so the accuracy curves are 0 and 1 and the probabilities sigmoid(-2) and sigmoid(2)."""
    region = torch.zeros(8, 8)
    region[2:6, 3:7] = 1
    weight = torch.stack([region.expand(3, 8, 8) / (16 * 3), torch.zeros(3, 8, 8)])
    model = LinearModel(weight)
    mean, std = [0.5] * 3, [0.25] * 3
    images = ((region - 0.5) / 0.25).expand(2, 3, 8, 8).clone()
    maps = region * 2 + distinct_maps(2, 8, 8, seed=11)  # R first, no ties
    batch = make_batch(images, torch.tensor([0, 0]))
    kwargs = dict(mean=mean, std=std, fractions=[0.3, 0.5, 0.7], noise=0.0)
    ctx = make_ctx(model)
    morf, lerf = RoadMoRF(**kwargs)(ctx, batch, maps), RoadLeRF(**kwargs)(ctx, batch, maps)
    abc = RoadABC(**kwargs)(make_ctx(model), batch, maps)  # computed afresh
    p_in, p_out = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(-2.0))
    assert torch.equal(morf.curves[""], torch.zeros(2, 3))
    assert torch.equal(lerf.curves[""], torch.ones(2, 3))
    torch.testing.assert_close(morf.curves["probability"], p_out.expand(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(lerf.curves["probability"], p_in.expand(2, 3), atol=1e-5, rtol=0)
    for single in (morf, lerf):
        for key in ("", "probability"):
            torch.testing.assert_close(single.scores[key], single.curves[key].mean(1))
    # the headline score: +1 (LeRF keeps the class, MoRF loses it), never -1
    assert abc.scores[""].tolist() == [1.0, 1.0]
    torch.testing.assert_close(
        abc.scores["probability"], (p_in - p_out).expand(2), atol=1e-5, rtol=0
    )
    for key, curve in (("", ""), ("probability", ".probability")):
        torch.testing.assert_close(abc.scores[key], lerf.scores[key] - morf.scores[key])
        torch.testing.assert_close(
            abc.scores[key], (abc.curves[f"lerf{curve}"] - abc.curves[f"morf{curve}"]).mean(1)
        )
        torch.testing.assert_close(abc.curves[f"morf{curve}"], morf.curves[key])
        torch.testing.assert_close(abc.curves[f"lerf{curve}"], lerf.curves[key])
