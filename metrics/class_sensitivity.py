"""Class sensitivity: does the map of the class asked for lie on that class's object, not on another's?

Needs images with two or more classes, each with its own mask (``dataset=scenes``): every sample
names a *partner* class present in the same image, with its mask (``Batch.partners``,
``Batch.partner_masks``). The metric re-runs the run's method (``ctx.method``) for the partner
class and scores the pair of maps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import ConfigError, check_bool, check_choice, check_number
from bench.metrics.base import Category, Metric, MetricOutput, Stability
from bench.metrics.localisation import POOLINGS, first_argmax, nonnegative


def min_sq_distance(u: Tensor, v: Tensor, region: Tensor) -> Tensor:
    """Squared distance ``[B]`` from the pixel ``(u[i], v[i])`` (column, row) to the nearest pixel of
    ``region`` bool ``[B, H, W]``; ``inf`` where the region is empty."""
    h, w = region.shape[-2:]
    dv2 = (torch.arange(h, device=region.device) - v.to(region.device, torch.float32)[:, None]) ** 2
    du2 = (torch.arange(w, device=region.device) - u.to(region.device, torch.float32)[:, None]) ** 2
    d2 = dv2[:, :, None] + du2[:, None, :]  # [B, H, W]
    return torch.where(region, d2, torch.full_like(d2, float("inf"))).flatten(1).amin(1)


class ClassSensitivity(Metric):
    """Class sensitivity on multi-object images: each class's map on its own object, not the other's.

    Protocol. For a pair of classes ``c`` (the sample's target) and ``d`` (its partner, another
    class present in the same image) with disjoint object masks ``O_c`` and ``O_d``, the method is
    run for both classes on the same image (``ctx.method``; the map for ``c`` is the run's). With
    ``R_x`` the non-negative map for class ``x`` (``pooling``, as the energy pointing game):

    - ``class_sensitivity`` (the score): ``(s_c + s_d) / 2`` with the own-object share
      ``s_c = R_c(O_c) / (R_c(O_c) + R_c(O_d))`` and ``s_d`` alike. 1 = each map lies on its own
      object only; 0 = each lies on the other's (swapped); a map that ignores the class (the same
      map for both, e.g. an edge detector or the random baseline) scores exactly 0.5.
    - ``class_sensitivity.own_share``: ``s_c`` alone (the target's map; chance for a uniform map:
      ``|O_c| / (|O_c| + |O_d|)``).
    - ``class_sensitivity.pointing``: the pointing game per pair, ``(h_c + h_d) / 2``, where
      ``h_x`` = 1 when the first maximum of ``x``'s map (row-major, the map at the input
      resolution) is within ``tolerance`` of ``O_x`` (squared distance ``< tolerance**2``,
      ``<=`` when not ``strict``; Zhang et al.'s rule) **and** strictly nearer to ``O_x`` than to
      the other object (a point equidistant from both counts for neither). A class-blind map
      points at one place for both classes, so it scores at most 0.5.

    This is the question Grad-CAM's class-discriminativeness was designed for (Selvaraju et al.,
    ICCV 2017, §4: the "cat" and "dog" maps of one image must differ, and lie on their own
    object), scored with the per-class pointing game of TorchRay's multi-label protocol (Zhang et
    al., ECCV 2016; one pair per class present) and with the energy share of the energy pointing
    game (Wang et al. 2020) restricted to the two objects. docs/PROTOCOLS.md §3 and §4 give the
    pointing and mass rules it reuses. It assumes the maps explain the label (``explain: label``,
    the default). Scores are NaN, flagged ``degenerate``, where either map has no positive mass on
    the two objects, a region is empty or a map is not finite. A dataset without partners
    (single-object images) is refused when the job is built, a batch without them when scored.

    Args:
        pooling: ``positive`` | ``abs`` | ``none``: how a map becomes ``R`` (docs/PROTOCOLS.md §4).
        tolerance: pointing radius in pixels of the input; null = 15 px per 224 px of the longer
            side (7.5 px at 112 px); 0 = the maximum must lie on the object.
        strict: ``<`` (TorchRay) rather than ``<=``.
    """

    higher_is_better = True
    score_range = (0.0, 1.0)  # shares and hit rates, every key
    category = Category.LOCALISATION
    stability = Stability.ROUNDING  # shares of the map's mass
    key_stability = {"pointing": Stability.BINARY}  # the maximum's pixel
    citation = (
        "Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
        "Localization. ICCV 2017 (class-discriminative localisation); Zhang et al. Top-down "
        "Neural Attention by Excitation Backprop. ECCV 2016 (per-class pointing game, TorchRay)."
    )
    # A dataset without partners (single-object images) is refused before any compute (the run
    # checks the dataset's fields; Metric.__call__ a batch's).
    requires = frozenset({"masks", "partners"})
    suffixes = {"own_share": None, "pointing": None}

    def __init__(
        self, pooling: str = "positive", tolerance: float | None = None, strict: bool = True
    ) -> None:
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.tolerance = (
            None if tolerance is None else check_number("tolerance", tolerance, minimum=0)
        )
        self.strict = check_bool("strict", strict)

    def tolerance_at(self, height: int, width: int) -> float:
        """The pointing radius in pixels for maps of ``height x width``."""
        return 15.0 * max(height, width) / 224.0 if self.tolerance is None else self.tolerance

    def shares(self, r: Tensor, own: Tensor, other: Tensor) -> Tensor:
        """``R(own) / (R(own) + R(other))`` ``[B]`` of relevance ``r`` ``[B, H, W]``."""
        a = (r * own).flatten(1).sum(1)
        b = (r * other).flatten(1).sum(1)
        return a / (a + b)

    def points_at(self, maps: Tensor, own: Tensor, other: Tensor) -> Tensor:
        """1.0 where the first maximum of ``maps`` is within tolerance of ``own`` and nearer to it
        than to ``other`` (all ``[B, H, W]``)."""
        u, v = first_argmax(maps)
        d_own = min_sq_distance(u, v, own)
        d_other = min_sq_distance(u, v, other)
        tol2 = self.tolerance_at(*maps.shape[-2:]) ** 2
        near = (d_own < tol2) if self.strict else (d_own <= tol2)
        near |= d_own == 0  # on the object: a tolerance of 0 asks for exactly that
        return (near & (d_own < d_other)).float()

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        b = maps.shape[0]
        nan = torch.full((b,), float("nan"), device=maps.device)
        if ctx.method is None:
            raise ConfigError(
                "class_sensitivity re-runs the method for the partner class; it needs a method "
                "(ctx.method), not precomputed maps."
            )
        own = batch.masks.to(maps.device).bool()
        other = batch.partner_masks.to(maps.device).bool()
        if own.shape != maps.shape or other.shape != maps.shape:
            raise ValueError(
                f"masks and partner masks must be [B, H, W] = {list(maps.shape)}; got "
                f"{list(own.shape)} and {list(other.shape)}."
            )
        partner_maps = ctx.method(ctx.model, batch.images, batch.partners.to(maps.device))
        r_c, bad_c = nonnegative(maps, self.pooling)
        r_d, bad_d = nonnegative(partner_maps, self.pooling)
        s_c = self.shares(r_c, own, other)
        s_d = self.shares(r_d, other, own)
        empty = ~own.flatten(1).any(1) | ~other.flatten(1).any(1)
        bad_own = bad_c | empty | ~torch.isfinite(s_c)
        bad_pair = bad_own | bad_d | ~torch.isfinite(s_d)
        finite = torch.isfinite(maps.flatten(1)).all(1) & torch.isfinite(
            partner_maps.flatten(1)
        ).all(1)
        pointing = (self.points_at(maps, own, other) + self.points_at(partner_maps, other, own)) / 2
        bad_point = empty | ~finite
        return MetricOutput(
            scores={
                "": torch.where(bad_pair, nan, (s_c + s_d) / 2),
                "own_share": torch.where(bad_own, nan, s_c),
                "pointing": torch.where(bad_point, nan, pointing),
            },
            flags={"": bad_pair, "own_share": bad_own, "pointing": bad_point},
            flag_reason="degenerate",
        )
