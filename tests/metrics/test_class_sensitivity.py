"""Class sensitivity (metrics/class_sensitivity.py) against hand computations on tiny maps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import ConfigError
from bench.metrics.class_sensitivity import ClassSensitivity, min_sq_distance

H = W = 8


def regions() -> dict[int, torch.Tensor]:
    """Class 0: a 2x2 block at the top left; class 1: a 2x2 block at the bottom right."""
    r = {c: torch.zeros(H, W, dtype=torch.bool) for c in (0, 1)}
    r[0][1:3, 1:3] = True
    r[1][5:7, 5:7] = True
    return r


class RegionMethod:
    """A stand-in for a method: the map of class ``c`` is ``table[c]``, whatever the image."""

    def __init__(self, table: dict[int, torch.Tensor]) -> None:
        self.table = table
        self.calls: list[list[int]] = []

    def __call__(self, model, images, targets):
        self.calls.append(targets.tolist())
        return torch.stack([self.table[int(t)].float() for t in targets])


def batch(targets=(0, 1), partners=(1, 0), with_partners=True) -> Batch:
    r = regions()
    return Batch(
        images=torch.zeros(len(targets), 3, H, W),
        targets=torch.tensor(targets),
        ids=[f"img:{t}" for t in targets],
        orig_sizes=torch.tensor([[H, W]] * len(targets)),
        masks=torch.stack([r[t] for t in targets]),
        partners=torch.tensor(partners) if with_partners else None,
        partner_masks=torch.stack([r[p] for p in partners]) if with_partners else None,
    )


def score(table, b=None, **kwargs):
    method = RegionMethod(table)
    b = b or batch()
    ctx = Context(model=nn.Identity(), method=method)
    maps = method(None, b.images, b.targets)
    method.calls.clear()
    out = ClassSensitivity(tolerance=0.0, **kwargs)(ctx, b, maps)
    return out, method


def test_a_perfect_map_scores_one_and_a_swapped_map_zero():
    r = regions()
    out, method = score({0: r[0], 1: r[1]})
    assert method.calls == [[1, 0]]  # the method is re-run once, for the partners
    for key in ("", "own_share", "pointing"):
        assert out.scores[key].tolist() == [1.0, 1.0], key
    out, _ = score({0: r[1], 1: r[0]})
    for key in ("", "own_share", "pointing"):
        assert out.scores[key].tolist() == [0.0, 0.0], key


def test_hand_computed_shares():
    # class 0's map: 3 on its own object's 4 pixels, 1 on the other's 4 pixels (+ background,
    # which does not count); class 1's map: 2 on its own, 2 on the other's
    r = regions()
    m0 = 3 * r[0].float() + 1 * r[1].float() + 0.5
    m1 = 2 * r[1].float() + 2 * r[0].float()
    out, _ = score({0: m0, 1: m1})
    s0 = (12 + 2) / ((12 + 2) + (4 + 2))  # own mass incl. background 0.5 on the own pixels
    s1 = 8 / 16
    assert out.scores["own_share"].tolist() == pytest.approx([s0, s1])
    assert out.scores[""].tolist() == pytest.approx([(s0 + s1) / 2] * 2)


def test_a_class_blind_map_scores_exactly_one_half_and_points_for_at_most_one_class():
    gen = torch.Generator().manual_seed(0)
    same = torch.rand(H, W, generator=gen)
    out, _ = score({0: same, 1: same})
    assert out.scores[""].tolist() == pytest.approx([0.5, 0.5])
    assert all(v <= 0.5 for v in out.scores["pointing"].tolist())


def test_pointing_needs_the_point_within_tolerance_and_nearer_to_the_own_object():
    r = regions()
    near_own = torch.zeros(H, W)
    near_own[3, 3] = 1  # d^2 = 2 to object 0 (pixel (2, 2)), 8 to object 1 (pixel (5, 5))
    method = RegionMethod({0: near_own, 1: r[1].float()})
    b = batch()
    ctx = Context(model=nn.Identity(), method=method)
    maps = method(None, b.images, b.targets)
    assert ClassSensitivity(tolerance=1.5)(ctx, b, maps).scores["pointing"].tolist() == [1, 1]
    # d^2 = 2 is not < 1: class 0's map misses, in both pairs (as target and as partner)
    assert ClassSensitivity(tolerance=1.0)(ctx, b, maps).scores["pointing"].tolist() == [0.5, 0.5]
    # d^2 = 2 <= 2 only when not strict
    inclusive = ClassSensitivity(tolerance=math.sqrt(2), strict=False)(ctx, b, maps)
    assert inclusive.scores["pointing"].tolist() == [1, 1]
    # a point within tolerance of both objects counts for the nearer one only
    mid = torch.zeros(H, W)
    mid[4, 4] = 1  # d^2 = 8 to object 0, 2 to object 1
    assert min_sq_distance(torch.tensor([4]), torch.tensor([4]), r[0][None]).tolist() == [8]
    assert min_sq_distance(torch.tensor([4]), torch.tensor([4]), r[1][None]).tolist() == [2]
    method = RegionMethod({0: mid, 1: mid})
    maps = method(None, b.images, b.targets)
    out = ClassSensitivity(tolerance=10.0)(Context(model=nn.Identity(), method=method), b, maps)
    assert out.scores["pointing"].tolist() == [0.5, 0.5]
    empty = torch.zeros(1, H, W, dtype=torch.bool)
    assert min_sq_distance(torch.tensor([0]), torch.tensor([0]), empty).tolist() == [math.inf]


def test_a_point_equidistant_from_both_objects_counts_for_neither():
    """The tie rule: a point must be strictly nearer to its own object. (v, u) = (3, 4) lies at
    d^2 = 1 + 4 = 5 from object 0 (pixel (2, 2)) and 4 + 1 = 5 from object 1 (pixel (5, 5))."""
    r = regions()
    tie = torch.zeros(H, W)
    tie[3, 4] = 1
    u, v = torch.tensor([4]), torch.tensor([3])
    assert min_sq_distance(u, v, r[0][None]).tolist() == min_sq_distance(u, v, r[1][None]).tolist()
    b = batch()
    for table, want in (
        ({0: tie, 1: tie}, [0.0, 0.0]),  # both maps on the tie: neither class is pointed at
        ({0: tie, 1: r[1].float()}, [0.5, 0.5]),  # class 1's map on its own object
    ):
        method = RegionMethod(table)
        maps = method(None, b.images, b.targets)
        ctx = Context(model=nn.Identity(), method=method)
        for strict in (True, False):  # within tolerance either way: the tie alone decides
            got = ClassSensitivity(tolerance=10.0, strict=strict)(ctx, b, maps).scores["pointing"]
            assert got.tolist() == want, (table, strict)


@pytest.mark.parametrize("tall", [False, True], ids=["8x16", "16x8"])
def test_the_default_tolerance_scales_with_the_longer_side_of_a_non_square_input(tall):
    """``tolerance: null`` = 15 px per 224 px of the longer side: 15 * 16 / 224 = 1.07 px on an
    8x16 (or 16x8) input, d^2 < 1.15; from the shorter side it would be 0.54 px (d^2 < 0.29)."""
    own, other = torch.zeros(2, 8, 16, dtype=torch.bool), torch.zeros(2, 8, 16, dtype=torch.bool)
    own[:, 1:3, 1:3] = True  # rows 1-2, columns 1-2
    other[:, 5:7, 11:14] = True
    maps = torch.zeros(2, 8, 16)
    maps[0, 2, 3] = 1  # one column right of the object: d^2 = 1, a hit
    maps[1, 3, 3] = 1  # diagonal: d^2 = 2, beyond 1.07 px
    partner = torch.zeros(1, 8, 16)
    partner[0, 6, 12] = 1  # on its own object
    if tall:
        own, other, maps, partner = (x.transpose(1, 2) for x in (own, other, maps, partner))
    h, w = maps.shape[-2:]
    b = Batch(
        images=torch.zeros(2, 3, h, w),
        targets=torch.tensor([0, 0]),
        ids=["a", "b"],
        orig_sizes=torch.tensor([[h, w]] * 2),
        masks=own,
        partners=torch.tensor([1, 1]),
        partner_masks=other,
    )
    metric = ClassSensitivity(tolerance=None)
    assert metric.tolerance_at(h, w) == pytest.approx(15 * 16 / 224)
    ctx = Context(model=nn.Identity(), method=RegionMethod({1: partner[0]}))
    assert metric(ctx, b, maps).scores["pointing"].tolist() == [1.0, 0.5]


def test_no_partner_is_refused_and_no_method_is_a_config_error():
    r = regions()
    b = batch(with_partners=False)
    ctx = Context(model=nn.Identity(), method=RegionMethod({0: r[0], 1: r[1]}))
    assert "partners" in ClassSensitivity.requires  # checked against the dataset before compute
    with pytest.raises(ValueError, match=r"needs batch fields \['partners'\]"):
        ClassSensitivity()(ctx, b, torch.rand(2, H, W))
    with pytest.raises(ConfigError, match="needs a method"):
        ClassSensitivity()(Context(model=nn.Identity()), batch(), torch.rand(2, H, W))


def test_a_map_without_mass_on_either_object_is_flagged():
    r = regions()
    zero = torch.zeros(H, W)
    zero[0, 7] = 1  # all its mass off both objects
    out, _ = score({0: zero, 1: r[1]})
    assert math.isnan(out.scores[""][0].item()) and out.flags[""][0]
    assert math.isnan(out.scores["own_share"][0].item())
    assert out.scores["pointing"].tolist() == [0.5, 0.5]
