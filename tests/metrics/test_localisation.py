"""Localisation metrics against hand-made cases, loop references and the docs/PROTOCOLS.md §7 oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench import ROOT
from bench.core.errors import ConfigError
from bench.data.base import ImageDataset
from bench.metrics.localisation import (
    EnergyPointingGame,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    boxes_to_masks,
    first_argmax,
    gaussian_smooth,
    point_hits,
)
from tests.metrics._loc_helpers import (
    dilated_area,
    make_batch,
    make_ctx,
    ref_box_mask,
    ref_imsmooth,
    ref_mass,
    ref_point,
    ref_rank,
    ref_torchray_evaluate,
)

CTX = make_ctx()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def peak_map(h: int, w: int, u: int, v: int) -> torch.Tensor:
    m = torch.zeros(1, h, w)
    m[0, v, u] = 1.0
    return m


# --- building blocks --------------------------------------------------------------------------


def test_boxes_to_masks_matches_loop_rasterisation_with_exclusive_end():
    boxes = [[[1, 2, 4, 3], [5.5, 0, 7, 2]], [], [[0, 0, 8, 6]]]
    got = boxes_to_masks(
        [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes],
        6,
        8,
        torch.device("cpu"),
    )
    for i, b in enumerate(boxes):
        np.testing.assert_array_equal(got[i].numpy(), ref_box_mask(b, 6, 8))
    assert got[0].sum() == 3 * 1 + 1 * 2  # [1,4) x [2,3) and u in {6}, v in {0,1}


def test_first_argmax_takes_the_first_tied_maximum_in_row_major_order():
    m = torch.zeros(2, 3, 4)
    m[0, 2, 1] = m[0, 1, 3] = 5.0  # (row 1, col 3) comes first in row-major order
    m[1] = 7.0  # constant: the first pixel
    u, v = first_argmax(m)
    assert u.tolist() == [3, 0] and v.tolist() == [1, 0]
    x = torch.rand(5, 7, 9, generator=gen(0))
    u, v = first_argmax(x)
    assert [(int(a), int(b)) for a, b in zip(u, v)] == [ref_point(xi.numpy()) for xi in x]


@pytest.mark.parametrize("sigma", [0.8, 2.3, 4.0])
def test_smoothing_is_torchrays_imsmooth_with_replicate_padding(sigma):
    # a peak on the border: reflect padding or a rounded support would change these values
    x = torch.rand(2, 13, 17, generator=gen(1), dtype=torch.float64)
    x[0, 0, 16] = 5.0
    got = gaussian_smooth(x, sigma)
    for i in range(2):
        np.testing.assert_allclose(got[i].numpy(), ref_imsmooth(x[i].numpy(), sigma), atol=1e-12)


def test_point_hits_tolerance_is_strict_by_default_and_inclusive_on_request():
    omega = torch.zeros(1, 40, 40, dtype=torch.bool)
    omega[0, 10:20, 25:30] = True  # nearest pixel to (u=10, v=15) is (u=25, v=15): distance 15
    u, v = torch.tensor([10]), torch.tensor([15])
    assert point_hits(u, v, omega, 15.0, strict=True).item() == 0.0
    assert point_hits(u, v, omega, 15.0, strict=False).item() == 1.0
    assert point_hits(u + 1, v, omega, 15.0, strict=True).item() == 1.0  # distance 14
    # (u=13, v=29): nearest (25, 19): 12^2 + 10^2 = 244 < 15^2 = 225? no -> miss; 244 <= 16^2 -> hit
    assert point_hits(torch.tensor([13]), torch.tensor([29]), omega, 15.0).item() == 0.0
    assert point_hits(torch.tensor([13]), torch.tensor([29]), omega, 16.0).item() == 1.0


# --- pointing game ----------------------------------------------------------------------------


def test_pointing_game_hand_cases_on_an_8x8_image():
    maps = torch.cat([peak_map(8, 8, 1, 1), peak_map(8, 8, 6, 6), peak_map(8, 8, 4, 1)])
    batch = make_batch(maps, boxes=[[[0, 0, 3, 3]], [[0, 0, 3, 3]], [[0, 0, 3, 3]]])
    # peak inside; peak at distance sqrt(4^2+4^2)=5.66 from (2,2); peak at distance 2 from (2,1)
    out = PointingGame(tolerance=0, strict=False)(CTX, batch, maps)
    assert out.scores[""].tolist() == [1.0, 0.0, 0.0]
    out = PointingGame(tolerance=2, strict=True)(CTX, batch, maps)
    assert out.scores[""].tolist() == [1.0, 0.0, 0.0]
    out = PointingGame(tolerance=2, strict=False)(CTX, batch, maps)
    assert out.scores[""].tolist() == [1.0, 0.0, 1.0]
    out = PointingGame(tolerance=6)(CTX, batch, maps)
    assert out.scores[""].tolist() == [1.0, 1.0, 1.0]


def test_pointing_game_equals_a_loop_reimplementation_of_torchray_with_mixed_original_sizes():
    g = gen(2)
    b, h, w = 12, 16, 16
    maps = torch.rand(b, h, w, generator=g)
    sizes = [(24, 20), (16, 16), (31, 45)] * 4
    boxes = []
    for hh, ww in sizes:
        k = int(torch.randint(1, 3, (1,), generator=g))
        bx = []
        for _ in range(k):
            x0, y0 = (
                float(torch.randint(0, ww - 3, (1,), generator=g)),
                float(torch.randint(0, hh - 3, (1,), generator=g)),
            )
            bx.append([x0, y0, x0 + 3, y0 + 2])
        boxes.append(bx)
    batch = make_batch(maps, boxes=boxes, orig_sizes=sizes)
    for smooth in (0.0, 0.05):
        got = PointingGame(tolerance=4, smooth=smooth)(CTX, batch, maps).scores[""]
        want = []
        for i, (hh, ww) in enumerate(sizes):
            sal = F.interpolate(
                maps[i][None, None].double(), size=(hh, ww), mode="bilinear", align_corners=False
            )[0, 0].numpy()
            if smooth:
                sal = ref_imsmooth(sal, smooth * max(hh, ww))
            want.append(
                float(ref_torchray_evaluate(ref_box_mask(boxes[i], hh, ww), ref_point(sal), 4))
            )
        assert got.tolist() == want, smooth
        assert 0 < sum(want) < len(want)  # the case discriminates


def test_pointing_game_is_batch_invariant():
    g = gen(3)
    maps = torch.rand(6, 10, 10, generator=g)
    boxes = [[[2, 2, 5, 6]], [[0, 0, 2, 2]], [[6, 1, 9, 4], [0, 7, 3, 10]]] * 2
    sizes = [(10, 10), (20, 15)] * 3
    whole = PointingGame(tolerance=3)(CTX, make_batch(maps, boxes, sizes), maps).scores[""]
    parts = [
        PointingGame(tolerance=3)(
            CTX, make_batch(maps[i : i + 1], boxes[i : i + 1], sizes[i : i + 1]), maps[i : i + 1]
        ).scores[""]
        for i in range(6)
    ]
    assert whole.tolist() == torch.cat(parts).tolist()


def test_pointing_game_flags_pairs_without_region_and_reports_the_difficult_subset():
    maps = torch.cat([peak_map(8, 8, 1, 1)] * 4)
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[2, 6:, 6:] = True
    batch = make_batch(
        maps,
        boxes=[[[0, 0, 2, 2]], [], [[20, 20, 30, 30]], [[6, 6, 8, 8]]],
        masks=masks,
        difficult=[True, True, False, True],
    )
    out = PointingGame(tolerance=1)(CTX, batch, maps)
    s = out.scores[""]
    assert (
        s[0] == 1 and math.isnan(s[1]) and math.isnan(s[2]) and s[3] == 0
    )  # box outside: no region
    assert out.flags[""].tolist() == [False, True, True, False] and out.flag_reason == "no_region"
    assert out.omit["difficult"].tolist() == [False, False, True, False]
    assert out.scores["difficult"][0] == 1 and out.scores["difficult"][3] == 0
    out = PointingGame(tolerance=1, region="masks")(CTX, batch, maps)
    assert out.flags[""].tolist() == [False, True, False, True]  # empty masks are flagged too
    assert out.scores[""][0] == 1 and out.scores[""][2] == 0
    none = make_batch(maps, boxes=[[[0, 0, 2, 2]]] * 4)
    assert "difficult" not in PointingGame()(CTX, none, maps).scores


def test_pointing_game_with_masks_resizes_them_to_the_original_size():
    maps = peak_map(8, 8, 6, 6)
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 6:, 6:] = True
    batch = make_batch(maps, masks=masks, orig_sizes=[(16, 16)])
    assert (
        PointingGame(tolerance=0, strict=False, region="masks")(CTX, batch, maps).scores[""].item()
        == 1
    )


# --- §7 oracles for the pointing game ---------------------------------------------------------


@pytest.mark.parametrize("tolerance", [0.0, 2.0, 3.5])
def test_pointing_game_chance_equals_the_dilated_area_fraction(tolerance):
    h, w = 12, 14
    boxes = [[2, 3, 5, 6], [9, 8, 12, 11]]
    omega = ref_box_mask(boxes, h, w)
    strict = tolerance > 0
    area = dilated_area(omega, tolerance, strict)
    chance = area / (h * w)
    # exact: every pixel is the argmax once (what an i.i.d. continuous random map does uniformly)
    onehot = torch.eye(h * w).view(h * w, h, w)
    batch = make_batch(onehot, boxes=[boxes] * (h * w))
    got = PointingGame(tolerance=tolerance, strict=strict)(CTX, batch, onehot).scores[""]
    assert got.sum().item() == area
    # statistical: i.i.d. uniform maps
    n = 4000
    rand = torch.rand(n, h, w, generator=gen(4))
    got = PointingGame(tolerance=tolerance, strict=strict)(CTX, make_batch(rand, [boxes] * n), rand)
    assert abs(got.scores[""].mean().item() - chance) < 4 * math.sqrt(chance * (1 - chance) / n)


def test_centre_baseline_hits_exactly_when_the_centre_is_within_tolerance():
    h, w, tol = 20, 24, 5.0
    g = gen(5)
    boxes = []
    for _ in range(64):
        x0, y0 = (
            int(torch.randint(0, w - 2, (1,), generator=g)),
            int(torch.randint(0, h - 2, (1,), generator=g)),
        )
        boxes.append(
            [
                [
                    x0,
                    y0,
                    x0 + int(torch.randint(1, 6, (1,), generator=g)),
                    y0 + int(torch.randint(1, 6, (1,), generator=g)),
                ]
            ]
        )
    # the centre map: a cone peaking at (W/2, H/2) = pixel (12, 10)
    vv, uu = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cone = -((uu - w / 2) ** 2 + (vv - h / 2) ** 2).float()
    maps = cone.expand(64, h, w).clone()
    got = PointingGame(tolerance=tol)(CTX, make_batch(maps, boxes), maps).scores[""]
    want = []
    for bx in boxes:
        dist = np.hypot(*np.nonzero(ref_box_mask(bx, h, w)) - np.array([[h / 2], [w / 2]]))
        want.append(float(dist.min() < tol))
    assert got.tolist() == want and 0 < sum(want) < 64
    # odd sizes: TorchRay's fractional centre point, scored by point_hits
    h, w = 21, 25
    omegas = torch.stack([torch.from_numpy(ref_box_mask(bx, h, w)) for bx in boxes])
    got = point_hits(torch.full((64,), w / 2), torch.full((64,), h / 2), omegas, tol)
    want = [float(ref_torchray_evaluate(o.numpy(), (w / 2, h / 2), tol)) for o in omegas]
    assert got.tolist() == want and 0 < sum(want) < 64


def test_strictly_increasing_transforms_leave_pointing_game_and_rank_accuracy_unchanged():
    g = gen(6)
    maps = torch.rand(16, 12, 12, generator=g, dtype=torch.float64) + 0.1
    boxes = [[[3, 3, 7, 8]], [[0, 0, 4, 4]], [[8, 2, 12, 6]], [[5, 9, 9, 12]]] * 4
    masks = torch.from_numpy(np.stack([ref_box_mask(b, 12, 12) for b in boxes]))
    batch = make_batch(maps, boxes, masks=masks)
    transforms = [lambda m: m.exp(), lambda m: m**3 + 2 * m, lambda m: 5 * m.log() - 1]
    for metric in (PointingGame(tolerance=2), RelevanceRankAccuracy(pooling="none")):
        base = metric(CTX, batch, maps).scores[""]
        for t in transforms:
            tm = t(maps)
            assert (
                metric(
                    CTX, batch, tm - tm.amin() if metric.__class__ is RelevanceRankAccuracy else tm
                )
                .scores[""]
                .tolist()
                == base.tolist()
            )


# --- relevance mass / rank / energy pointing game ---------------------------------------------


def test_relevance_mass_and_rank_hand_case():
    r = torch.tensor(
        [[[4.0, 3.0, 0.0, 0.4], [2.0, 0.5, 0.0, 0.0], [0.0, 0.0, 6.0, 0.0], [0.0, 0.0, 0.0, 0.25]]]
    )
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, :2, :2] = True  # holds 4, 3, 2, 0.5; the top-4 of r are 6, 4, 3, 2
    batch = make_batch(r, masks=gt)
    assert RelevanceMassAccuracy()(CTX, batch, r).scores[""].item() == pytest.approx(9.5 / 16.15)
    assert RelevanceRankAccuracy()(CTX, batch, r).scores[""].item() == pytest.approx(3 / 4)
    # signed maps: pooling decides what counts
    s = r.clone()
    s[0, 2, 2] = -6.0
    assert RelevanceMassAccuracy(pooling="abs")(CTX, batch, s).scores[""].item() == pytest.approx(
        9.5 / 16.15
    )
    assert RelevanceMassAccuracy(pooling="positive")(CTX, batch, s).scores[
        ""
    ].item() == pytest.approx(9.5 / 10.15)
    assert RelevanceRankAccuracy(pooling="abs")(CTX, batch, s).scores[""].item() == 0.75
    assert (
        RelevanceRankAccuracy(pooling="positive")(CTX, batch, s).scores[""].item() == 1.0
    )  # 4, 3, 2, .5
    out = RelevanceMassAccuracy(pooling="none")(CTX, batch, s)
    assert (
        math.isnan(out.scores[""].item())
        and out.flags[""].item()
        and out.flag_reason == "degenerate"
    )


def test_relevance_mass_and_rank_equal_the_clevr_xai_reference_on_random_cases():
    g = gen(7)
    r = torch.rand(10, 9, 11, generator=g)
    gt = torch.rand(10, 9, 11, generator=g) < 0.3
    batch = make_batch(r, masks=gt)
    mass = RelevanceMassAccuracy()(CTX, batch, r).scores[""]
    rank = RelevanceRankAccuracy()(CTX, batch, r).scores[""]
    for i in range(10):
        assert mass[i].item() == pytest.approx(ref_mass(r[i].numpy(), gt[i].numpy()), abs=1e-6)
        assert rank[i].item() == pytest.approx(ref_rank(r[i].numpy(), gt[i].numpy()), abs=1e-6)


def test_rank_ties_are_broken_by_pixel_index_or_by_the_seeded_run_generator():
    r = torch.zeros(1, 2, 4)
    r[0, 0, :2] = r[0, 1, 2:] = 1.0  # four tied maxima; |G| = 2
    gt = torch.zeros(1, 2, 4, dtype=torch.bool)
    gt[0, 1, 2:] = True
    batch = make_batch(r, masks=gt)
    assert (
        RelevanceRankAccuracy(ties="stable")(CTX, batch, r).scores[""].item() == 0.0
    )  # row 0 first
    many = r.expand(2000, 2, 4)
    b2 = make_batch(many, masks=gt.expand(2000, 2, 4))
    rnd = RelevanceRankAccuracy(ties="random")(make_ctx(seed=3), b2, many).scores[""]
    assert rnd.mean().item() == pytest.approx(0.5, abs=0.05)  # E = |G| * (2/4) / |G|
    again = RelevanceRankAccuracy(ties="random")(make_ctx(seed=3), b2, many).scores[""]
    assert torch.equal(rnd, again)


def test_oracle_the_ground_truth_scores_one_and_a_random_map_scores_rho():
    h, w = 32, 32
    gt = torch.zeros(h, w, dtype=torch.bool)
    gt[4:12, 6:22] = True
    gt[20:28, 10:14] = True
    rho = gt.float().mean().item()
    n = 300
    masks = gt.expand(n, h, w)
    ideal = masks.float()
    batch = make_batch(ideal, masks=masks)
    for metric in (RelevanceMassAccuracy(), RelevanceRankAccuracy()):
        assert (metric(CTX, batch, ideal).scores[""] == 1).all()
        rand = torch.rand(n, h, w, generator=gen(8))
        got = metric(CTX, make_batch(rand, masks=masks), rand).scores[""]
        assert got.mean().item() == pytest.approx(rho, abs=0.01), type(metric).__name__


def test_energy_pointing_game_is_the_mass_in_the_union_of_boxes_at_the_original_size():
    g = gen(9)
    maps = torch.rand(4, 8, 8, generator=g) - 0.2
    boxes = [[[0, 0, 5, 5], [3, 3, 8, 8]], [[2, 1, 6, 12]], [[0, 0, 16, 16]], [[10, 10, 12, 12]]]
    sizes = [(8, 8), (16, 12), (16, 16), (16, 16)]
    batch = make_batch(maps, boxes, sizes)
    got = EnergyPointingGame()(CTX, batch, maps).scores[""]
    for i, (hh, ww) in enumerate(sizes):
        r = F.interpolate(
            maps[i].abs()[None, None], size=(hh, ww), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        assert got[i].item() == pytest.approx(ref_mass(r, ref_box_mask(boxes[i], hh, ww)), abs=1e-6)
    assert got[2].item() == pytest.approx(1.0)
    same = RelevanceMassAccuracy(region="boxes")(CTX, batch, maps).scores[""]
    assert torch.equal(got, same)
    # chance: an i.i.d. random map puts the box-area fraction inside
    rand = torch.rand(400, 16, 16, generator=g)
    area = ref_box_mask(boxes[1], 16, 16).mean()
    out = EnergyPointingGame()(CTX, make_batch(rand, [boxes[1]] * 400), rand).scores[""]
    assert out.mean().item() == pytest.approx(area, abs=0.01)


# --- non-square originals (H != W): every metric resizes an 8x8 map to them --------------------
#
# Bilinear upsampling (align_corners=False) by an odd factor s puts a one-pixel peak at input
# (i, j) on a unique maximum at (s*i + (s-1)/2, s*j + (s-1)/2): 8x8 -> 56x120 is s = 7 (rows) and
# 15 (columns), so a peak at input (3, 3) points at (u, v) = (52, 24); at 120x56, (24, 52). The
# default tolerance is 15 px per 224 px of the longer side: 15 * 120 / 224 = 8.04 px (d^2 < 64.6).


def _peak_cases(tall: bool):
    """Maps, boxes, sizes and expected hits of the peak at (u, v) = (52, 24) (transposed when
    ``tall``): boxes at squared distance 36 (dx 6), 64 (dx 8), 61 (dx 6, dy 5), 81 (dx 9)."""
    boxes = [
        [58, 20, 70, 30],  # nearest pixel (58, 24): d^2 = 36
        [60, 20, 70, 30],  # (60, 24): 64
        [58, 29, 70, 40],  # (58, 29): 36 + 25 = 61
        [61, 20, 70, 30],  # (61, 24): 81, beyond 8.04 px
        [40, 10, 60, 30],  # the point inside
    ]
    if tall:
        boxes = [[y0, x0, y1, x1] for x0, y0, x1, y1 in boxes]
    size = (120, 56) if tall else (56, 120)
    maps = peak_map(8, 8, 3, 3).expand(len(boxes), 8, 8)
    return maps, [[b] for b in boxes], [size] * len(boxes), [1.0, 1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("tall", [False, True], ids=["wide", "tall"])
def test_pointing_game_default_tolerance_scales_with_the_longer_side_of_the_original(tall):
    maps, boxes, sizes, want = _peak_cases(tall)
    game = PointingGame(tolerance=None)
    assert game.tolerance_at(*sizes[0]) == pytest.approx(15 * 120 / 224)
    assert game(CTX, make_batch(maps, boxes, sizes), maps).scores[""].tolist() == want
    # masks at the input resolution, resized (nearest) to the original: input columns 4..7 are
    # original columns 60..119 (rows when tall), 8 px from the point: d^2 = 64 < 64.6
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :, 4:] = True
    mask = mask.transpose(1, 2) if tall else mask
    batch = make_batch(maps[:1], masks=mask, orig_sizes=sizes[:1])
    assert PointingGame(tolerance=None, region="masks")(CTX, batch, maps[:1]).scores[""].item() == 1
    assert PointingGame(tolerance=7.9, region="masks")(CTX, batch, maps[:1]).scores[""].item() == 0


def _half_map(tall: bool) -> torch.Tensor:
    """1 on the left (top when ``tall``) half of an 8x8 map, 0 elsewhere."""
    m = torch.zeros(1, 8, 8)
    m[0, :, :4] = 1
    return m.transpose(1, 2) if tall else m


@pytest.mark.parametrize("tall", [False, True], ids=["wide", "tall"])
def test_mass_energy_and_rank_on_a_non_square_original_by_hand(tall):
    """The half map resized to 56x120 (columns by 15): per row, columns 0..52 hold 1, columns
    53..66 fall linearly (1 - k/15, k = 1..14, summing to 7), the rest 0: a row holds 60. A box
    over columns 10..69 holds 43 + 7 = 50 of it; over 0..52, 53. Rank: the 60 highest columns are
    0..59, of which a box over 10..69 holds 50 (of its 60); a box over 0..52 is the top 53.
    Transposed for 120x56."""
    maps = _half_map(tall).expand(2, 8, 8)
    boxes = [[[10, 0, 70, 56]], [[0, 0, 53, 56]]]
    if tall:
        boxes = [[[y0, x0, y1, x1] for x0, y0, x1, y1 in b] for b in boxes]
    sizes = [(120, 56) if tall else (56, 120)] * 2
    batch = make_batch(maps, boxes, sizes)
    for metric in (EnergyPointingGame(), RelevanceMassAccuracy(region="boxes")):
        got = metric(CTX, batch, maps).scores[""]
        torch.testing.assert_close(got, torch.tensor([50 / 60, 53 / 60]), rtol=0, atol=1e-6)
    got = RelevanceRankAccuracy(region="boxes")(CTX, batch, maps).scores[""]
    assert got.tolist() == pytest.approx([50 / 60, 1.0], abs=1e-7)  # float32
    # masks are scored at the input resolution (8x8 here): a mask of the left half holds all
    masks = (_half_map(tall) > 0).expand(2, 8, 8)
    for metric in (RelevanceMassAccuracy(), RelevanceRankAccuracy()):
        assert metric(CTX, make_batch(maps, masks=masks, orig_sizes=sizes), maps).scores[
            ""
        ].tolist() == [1.0, 1.0]


def test_masks_of_the_wrong_size_and_empty_regions():
    maps = torch.rand(2, 6, 6, generator=gen(10))
    with pytest.raises(ValueError, match="masks must be"):
        RelevanceMassAccuracy()(
            CTX, make_batch(maps, masks=torch.ones(2, 5, 5, dtype=torch.bool)), maps
        )
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, 0, 0] = True
    out = RelevanceRankAccuracy()(CTX, make_batch(maps, masks=masks), maps)
    assert out.flags[""].tolist() == [False, True] and math.isnan(out.scores[""][1].item())
    zero = torch.zeros(2, 6, 6)
    out = RelevanceMassAccuracy()(CTX, make_batch(zero, masks=masks), zero)
    assert out.flags[""].tolist() == [True, True]


# --- metadata, configuration --------------------------------------------------------------------

ALL = [PointingGame, EnergyPointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy]


@pytest.mark.parametrize("cls", ALL)
def test_every_metric_states_direction_category_and_citation(cls):
    meta = cls().meta()
    assert meta["higher_is_better"] is True and meta["category"] == "localisation"
    assert len(meta["citation"]) > 20 and meta["requires"] in (["boxes"], ["masks"])


def test_bad_keys_are_config_errors_naming_the_choices():
    with pytest.raises(
        ConfigError, match="region=box .*accepted: boxes, masks.*Did you mean boxes"
    ):
        PointingGame(region="box")
    with pytest.raises(ConfigError, match="tolerance"):
        PointingGame(tolerance=-1)
    with pytest.raises(ConfigError, match="pooling=max .*accepted: abs, none, positive"):
        RelevanceMassAccuracy(pooling="max")
    with pytest.raises(ConfigError, match="ties=first"):
        RelevanceRankAccuracy(ties="first")


class _LabelsOnly(ImageDataset):
    name = "labels_only"
    fields = frozenset()


def test_a_metric_needing_boxes_fails_at_configuration_on_a_dataset_without_them():
    data = _LabelsOnly()
    for metric, field in [
        (PointingGame(), "boxes"),
        (EnergyPointingGame(), "boxes"),
        (RelevanceMassAccuracy(), "masks"),
        (PointingGame(region="masks"), "masks"),
    ]:
        with pytest.raises(
            ConfigError, match=f"metric=x needs {field}, which dataset=labels_only does not"
        ):
            data.require(metric.requires, "metric=x")

    class _Masks(ImageDataset):
        fields = frozenset({"masks"})

    _Masks().require(RelevanceRankAccuracy().requires, "metric=x")  # satisfied: no error
    with pytest.raises(ConfigError, match="needs boxes"):
        _Masks().require(PointingGame().requires, "metric=x")


NEW = {
    "pointing_game": "PointingGame",
    "energy_pointing_game": "EnergyPointingGame",
    "relevance_mass_accuracy": "RelevanceMassAccuracy",
    "relevance_rank_accuracy": "RelevanceRankAccuracy",
    "complexity": "Complexity",
    "sparseness": "Sparseness",
}


def test_metric_files_compose_into_separate_nodes_and_instantiate():
    from bench.config.schema import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"metric=[{','.join(NEW)}]"])
    assert set(cfg.metric) == set(NEW)
    for name in NEW:
        metric = instantiate(cfg.metric[name])
        assert type(metric).__name__ == NEW[name]
        assert metric.settings()  # every key is recorded with the results
    assert instantiate(cfg.metric.pointing_game).tolerance == cfg.dataset.pointing_tolerance


def test_collation_reports_torchrays_per_class_mean_and_the_per_sample_mean():
    import pandas as pd

    from bench.results.collate import summarise

    maps = torch.cat(
        [
            peak_map(8, 8, 1, 1),
            peak_map(8, 8, 1, 1),
            peak_map(8, 8, 7, 7),
            peak_map(8, 8, 7, 7),
            peak_map(8, 8, 1, 1),
            peak_map(8, 8, 1, 1),
        ]
    )
    boxes = [[[0, 0, 2, 2]]] * 5 + [[]]  # the last pair has no region: skipped, as TorchRay does
    batch = make_batch(maps, boxes, targets=[0, 0, 0, 1, 1, 1])
    scores = PointingGame(tolerance=1)(CTX, batch, maps).scores[""].tolist()
    df = pd.DataFrame(
        {
            "model": "m",
            "dataset": "d",
            "method": "x",
            "metric": "pointing_game",
            "target": batch.targets.tolist(),
            "value": scores,
            "higher_is_better": True,
            "aggregate": PointingGame.aggregate,
        }
    )
    row = summarise(df).iloc[0]
    hits = {0: 2, 1: 1}
    pairs = {0: 3, 1: 2}
    torchray = np.mean([hits[c] / max(1, pairs[c]) for c in (0, 1)])  # class_accuracies.mean()
    assert row["class_mean"] == pytest.approx(torchray) and row["mean"] == pytest.approx(3 / 5)
