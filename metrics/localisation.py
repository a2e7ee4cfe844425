"""Localisation metrics: does the map point at, or put its mass on, the ground-truth object?

Every metric here compares the map with the class region Omega of the target: the union of its
boxes (``region: boxes``, scored at the original image size, the map resized bilinearly as in
TorchRay) or its pixel mask (``region: masks``). docs/PROTOCOLS.md §3 and §4.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import check_bool, check_choice, check_number
from bench.core.imaging import gaussian_smooth
from bench.core.ranking import TIES, rank_pixels
from bench.metrics.base import Category, Metric, MetricOutput, Stability

REGIONS = ("boxes", "masks")

#: How a ``[B, H, W]`` map becomes the non-negative relevance ``R`` (docs/PROTOCOLS.md §4).
#: Channel pooling itself is the method's ``reduction`` key (``bench.methods.base.REDUCTIONS``): with
#: ``reduction: sum``, ``abs`` is CLEVR-XAI's "sum,abs" and ``positive`` its "sum,pos"; with
#: ``max_abs | l1 | l2 | l2_squared`` the map is already non-negative and all three agree.
POOLINGS = ("abs", "positive", "none")


def nonnegative(maps: Tensor, pooling: str) -> tuple[Tensor, Tensor]:
    """``R`` = ``|m|``, ``max(m, 0)`` or ``m`` for ``maps`` ``[B, H, W]``, and bool ``[B]``: True
    where ``R`` cannot be a relevance distribution (a negative value with ``none``, a zero sum, or a
    non-finite value)."""
    if pooling == "abs":
        r = maps.abs()
    elif pooling == "positive":
        r = maps.clamp_min(0)
    else:
        r = maps
    flat = r.flatten(1)
    bad = ~torch.isfinite(flat).all(1) | (flat < 0).any(1) | ~(flat.sum(1) > 0)
    return r, bad


def boxes_to_masks(boxes: list[Tensor], height: int, width: int, device: torch.device) -> Tensor:
    """Rasterise each image's boxes ``[K_i, 4]`` (xyxy, 0-based, exclusive end) into bool ``[B, H, W]``."""
    k_max = max((len(b) for b in boxes), default=0)
    out = torch.zeros(len(boxes), height, width, dtype=torch.bool, device=device)
    if k_max == 0:
        return out
    padded = torch.full((len(boxes), k_max, 4), -1.0, device=device)  # empty boxes cover nothing
    for i, b in enumerate(boxes):
        if len(b):
            padded[i, : len(b)] = b.to(device=device, dtype=torch.float32)
    u = torch.arange(width, device=device, dtype=torch.float32)
    v = torch.arange(height, device=device, dtype=torch.float32)
    x0, y0, x1, y1 = (padded[..., j, None] for j in range(4))  # [B, K, 1]
    in_u = (u >= x0) & (u < x1)  # [B, K, W]
    in_v = (v >= y0) & (v < y1)  # [B, K, H]
    return (in_v[..., :, None] & in_u[..., None, :]).any(1)


def first_argmax(maps: Tensor) -> tuple[Tensor, Tensor]:
    """``(u, v)`` = (column, row) of the first maximum in row-major order of ``maps`` ``[B, H, W]``."""
    flat = maps.flatten(1)
    is_max = flat == flat.amax(1, keepdim=True)
    idx = is_max.float().argmax(1)  # first True: argmax returns the first maximal index
    return idx % maps.shape[-1], idx // maps.shape[-1]


def point_hits(
    u: Tensor, v: Tensor, omega: Tensor, tolerance: float, strict: bool = True
) -> Tensor:
    """1.0 where the point ``(u[i], v[i])`` (pixel indices, may be fractional: TorchRay's centre
    point is ``(W/2, H/2)``) lies within ``tolerance`` of a pixel of ``omega`` bool ``[B, H, W]``:
    squared distance ``< tolerance**2`` (``<=`` when not ``strict``), or the point itself lies in
    ``omega`` (so a tolerance of 0 asks whether the maximum lies in the region, strict or not)."""
    h, w = omega.shape[-2:]
    dv2 = (torch.arange(h, device=omega.device) - v.to(omega.device, torch.float32)[:, None]) ** 2
    du2 = (torch.arange(w, device=omega.device) - u.to(omega.device, torch.float32)[:, None]) ** 2
    d2 = dv2[:, :, None] + du2[:, None, :]  # [B, H, W]
    near = d2 < tolerance**2 if strict else d2 <= tolerance**2
    near |= d2 == 0  # the point itself: a tolerance of 0 means "the maximum lies in the region"
    return (near & omega).flatten(1).any(1).float()


def scored_regions(
    batch: Batch, maps: Tensor, region: str, resize_masks: bool
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Groups ``(index [g], maps [g, h, w], omega bool [g, h, w])`` where each metric scores.

    Boxes live in the original image's pixels: one group per original size, the map resized there
    bilinearly (``align_corners=False``, as TorchRay). Masks live at the input resolution: with
    ``resize_masks`` they are resized (nearest) to the original size like the map, otherwise the
    whole batch is scored at the input resolution without resizing anything.
    """
    device = maps.device
    if region == "masks" and not resize_masks:
        masks = batch.masks.to(device).bool()
        if masks.shape != maps.shape:
            raise ValueError(
                f"masks must be [B, H, W] = {list(maps.shape)}; got {list(masks.shape)}."
            )
        yield torch.arange(maps.shape[0], device=device), maps, masks
        return
    sizes = [tuple(s) for s in batch.orig_sizes.tolist()]
    for size in sorted(set(sizes)):  # one group per original size
        idx = [i for i, s in enumerate(sizes) if s == size]
        sel = torch.tensor(idx, device=device)
        m = maps[sel]
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        if region == "masks":
            omega = batch.masks.to(device)[sel]
            if tuple(omega.shape[-2:]) != size:
                omega = F.interpolate(omega[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
            omega = omega.bool()
        else:
            omega = boxes_to_masks([batch.boxes[i] for i in idx], size[0], size[1], device)
        yield sel, m, omega


class PointingGame(Metric):
    """Pointing game (Zhang et al., ECCV 2016), as in TorchRay's benchmark.

    Protocol (docs/PROTOCOLS.md §3): the map is resized bilinearly to the original image size
    (optionally smoothed as TorchRay's ``imsmooth``), the point is the first maximum in row-major
    order, and it is a hit when a pixel of the class region lies at squared distance
    ``< tolerance**2`` (``<=`` with ``strict: false``). The score per (image, class) pair is 1 (hit)
    or 0 (miss); NaN, flagged ``no_region``, when the region is empty (TorchRay skips such pairs).
    Collation reports the per-sample mean and the unweighted mean over classes.
    ``pointing_game.difficult`` repeats the score on the pairs the dataset flags as difficult.
    Quantus' variant is ``tolerance: 0, strict: false`` except for ties (Quantus: a hit when any
    tied maximum lies in the region; here only the first one counts).

    Centre baseline: TorchRay's ``center`` method points at ``(W/2, H/2)`` of the original image;
    :func:`point_hits` scores such a fractional point exactly. A map whose unique maximum is that
    pixel (even sizes) gives the same hits through this metric.

    Args:
        tolerance: radius in pixels of the original image (15 in TorchRay, for images of a few
            hundred pixels); null = the protocol's 15 px per 224 px of each image's longer side
            (7.5 px at 112 px). 0 = the maximum must lie in the region.
        region: ``boxes`` (union of the class's boxes) or ``masks`` (its pixel mask).
        strict: ``<`` (TorchRay) rather than ``<=``.
        smooth: Gaussian sigma as a fraction of ``max(H, W)`` applied before the argmax
            (TorchRay uses 0.02 for gradient, deconvnet and guided backprop); 0 = none.
    """

    higher_is_better = True
    score_range = (0.0, 1.0)
    category = Category.LOCALISATION
    stability = Stability.BINARY  # the maximum's pixel: near-tied maxima may swap
    citation = "Zhang et al. Top-down Neural Attention by Excitation Backprop. ECCV 2016 (TorchRay protocol)."
    requires = frozenset({"boxes"})
    aggregate = "class_mean"
    suffixes = {"difficult": None}

    def __init__(
        self,
        tolerance: float | None = 15.0,
        region: str = "boxes",
        strict: bool = True,
        smooth: float = 0.0,
    ) -> None:
        self.region = check_choice("region", region, REGIONS)
        self.tolerance = (
            None if tolerance is None else check_number("tolerance", tolerance, minimum=0)
        )
        self.strict = check_bool("strict", strict)
        self.smooth = check_number("smooth", smooth, minimum=0)
        self.requires = frozenset({region})

    def tolerance_at(self, height: int, width: int) -> float:
        """The tolerance in pixels for an original image of ``height x width``."""
        return 15.0 * max(height, width) / 224.0 if self.tolerance is None else self.tolerance

    def hits(self, maps: Tensor, omega: Tensor) -> Tensor:
        """1.0 where the first maximum of ``maps`` is within tolerance of ``omega`` (both ``[B, H, W]``,
        at the original image size)."""
        h, w = maps.shape[-2:]
        if self.smooth > 0:
            maps = gaussian_smooth(maps, self.smooth * max(h, w))
        u, v = first_argmax(maps)
        return point_hits(u, v, omega, self.tolerance_at(h, w), self.strict)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        b = maps.shape[0]
        scores = torch.full((b,), float("nan"), device=maps.device)
        has_region = torch.zeros(b, dtype=torch.bool, device=maps.device)
        for sel, m, omega in scored_regions(batch, maps, self.region, resize_masks=True):
            scores[sel] = self.hits(m, omega)
            has_region[sel] = omega.flatten(1).any(1)
        no_region = ~has_region
        finite = torch.isfinite(maps.flatten(1)).all(1)
        scores = torch.where(no_region | ~finite, torch.full_like(scores, float("nan")), scores)
        out = MetricOutput(scores={"": scores}, flags={"": no_region}, flag_reason="no_region")
        difficult = batch.difficult.to(maps.device) if len(batch.difficult) == b else None
        if difficult is not None and bool(difficult.any()):
            out.scores["difficult"] = torch.where(
                difficult, scores, torch.full_like(scores, float("nan"))
            )
            out.flags["difficult"] = no_region
            out.omit["difficult"] = ~difficult
        return out


class RelevanceMassAccuracy(Metric):
    """Relevance mass accuracy (Arras et al., CLEVR-XAI): the share of ``R`` inside the region.

    ``sum_{p in Omega} R(p) / sum_p R(p)`` with ``R`` the non-negative map given by ``pooling``
    (docs/PROTOCOLS.md §4). Chance for an i.i.d. random map: ``|Omega| / N``. NaN, flagged
    ``degenerate``, when the region is empty or ``R`` is not a distribution (zero sum, a negative
    value with ``pooling: none``, a non-finite value). Masks are scored at the input resolution
    (as the reference, where heatmap and ground truth share their size); boxes at the original
    image size.

    Args:
        region: ``masks`` (the pixel mask, CLEVR-XAI) or ``boxes`` (the union of the class's boxes).
        pooling: ``abs`` | ``positive`` | ``none``: how the map becomes ``R`` (see :data:`POOLINGS`).
    """

    higher_is_better = True
    score_range = (0.0, 1.0)  # a share of the map's mass (rank: of the top pixels)
    category = Category.LOCALISATION
    stability = Stability.ROUNDING  # a share of the map's mass
    citation = (
        "Arras, Osman, Samek. CLEVR-XAI: A benchmark dataset for the ground truth evaluation of "
        "neural network explanations. Information Fusion 81, 2022."
    )
    requires = frozenset({"masks"})

    def __init__(self, region: str = "masks", pooling: str = "abs") -> None:
        self.region = check_choice("region", region, REGIONS)
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.requires = frozenset({region})

    def score(self, ctx: Context, r: Tensor, omega: Tensor) -> Tensor:
        """Per-image score ``[g]`` of relevance ``r`` ``[g, h, w]`` against ``omega`` ``[g, h, w]``."""
        inside = (r * omega).flatten(1).sum(1)
        return inside / r.flatten(1).sum(1)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        b = maps.shape[0]
        r, bad = nonnegative(maps, self.pooling)
        scores = torch.full((b,), float("nan"), device=maps.device)
        empty = torch.ones(b, dtype=torch.bool, device=maps.device)
        for sel, m, omega in scored_regions(batch, r, self.region, resize_masks=False):
            scores[sel] = self.score(ctx, m, omega).to(scores.dtype)
            empty[sel] = ~omega.flatten(1).any(1)
        degenerate = bad | empty
        scores = torch.where(degenerate, torch.full_like(scores, float("nan")), scores)
        return MetricOutput(scores={"": scores}, flags={"": degenerate}, flag_reason="degenerate")


class EnergyPointingGame(RelevanceMassAccuracy):
    """Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020): the share of the map's
    energy inside the union of the class's boxes.

    The same formula as :class:`RelevanceMassAccuracy` (``sum_{p in Omega} R / sum R``), with the
    Score-CAM defaults: boxes, scored at the original image size (rows indexed by y; the reference
    snippet swaps the axes). Chance: the box area fraction. Quantus calls it
    ``AttributionLocalisation`` (Kohlbrenner et al. 2020).

    Args:
        region: ``boxes`` (Score-CAM) or ``masks``.
        pooling: ``abs`` | ``positive`` | ``none`` (see :data:`POOLINGS`).
    """

    citation = (
        "Wang et al. Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural "
        "Networks. CVPR Workshops 2020."
    )
    requires = frozenset({"boxes"})

    def __init__(self, region: str = "boxes", pooling: str = "abs") -> None:
        super().__init__(region=region, pooling=pooling)


class RelevanceRankAccuracy(RelevanceMassAccuracy):
    """Relevance rank accuracy (Arras et al., CLEVR-XAI): the share of the ``|Omega|`` highest
    pixels of ``R`` that lie in the region.

    Order-based, so any strictly increasing transform of ``R`` leaves it unchanged (ties aside).
    Chance for an i.i.d. random map: ``|Omega| / N``. Ties in ``R`` are broken by ``ties``:
    ``stable`` (by pixel index, row-major) or ``random`` (seeded by the run); the reference's
    ``argsort`` leaves them to the sort algorithm.

    Args:
        region: ``masks`` (CLEVR-XAI) or ``boxes``.
        pooling: ``abs`` | ``positive`` | ``none`` (see :data:`POOLINGS`).
        ties: ``stable`` | ``random``.
    """

    stability = Stability.RANKING  # the top pixels: near-ties at the cut may swap

    def __init__(self, region: str = "masks", pooling: str = "abs", ties: str = "stable") -> None:
        super().__init__(region=region, pooling=pooling)
        self.ties = check_choice("ties", ties, TIES)

    def score(self, ctx: Context, r: Tensor, omega: Tensor) -> Tensor:
        gen = ctx.generator(offset=1) if self.ties == "random" else None
        rank = rank_pixels(r, self.ties, gen)  # [g, N], 0 = most relevant
        inside = omega.flatten(1)
        k = inside.sum(1, keepdim=True)
        return (inside & (rank < k)).sum(1) / k[:, 0].clamp_min(1)
