"""Localisation metrics: does the map point at the ground-truth object?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.context import Context
from bench.data.base import Batch
from bench.errors import ConfigError, choice_error
from metrics.base import Metric, MetricOutput

REGIONS = ("boxes", "masks")


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


def gaussian_smooth(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of ``maps`` ``[B, H, W]`` (reflect padding, 4-sigma support)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(4 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    m = maps[:, None]
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return m[:, 0]


class PointingGame(Metric):
    """Pointing game (Zhang et al., ECCV 2016), as in TorchRay's benchmark.

    Protocol (PROTOCOLS.md §3): the map is resized bilinearly to the original image size, the
    point is the first maximum in row-major order, and it is a hit when a pixel of the class
    region lies at squared distance ``< tolerance**2`` (``<=`` with ``strict: false``). The score
    per (image, class) pair is 1 (hit) or 0 (miss); collation reports the per-sample mean and the
    unweighted mean over classes. ``pointing_game.difficult`` repeats the score on the pairs the
    dataset flags as difficult.

    Args:
        tolerance: radius in pixels of the original image (15 in TorchRay, meant for ~224 px images).
        region: ``boxes`` (union of the class's boxes) or ``masks`` (its pixel mask).
        strict: ``<`` (TorchRay) rather than ``<=``.
        smooth: Gaussian sigma as a fraction of ``max(H, W)`` applied before the argmax
            (TorchRay uses 0.02 for gradient, deconvnet and guided backprop); 0 = none.
    """

    higher_is_better = True
    category = "localisation"
    citation = "Zhang et al. Top-down Neural Attention by Excitation Backprop. ECCV 2016 (TorchRay protocol)."
    aggregate = "class_mean"

    def __init__(
        self, tolerance: float = 15.0, region: str = "boxes", strict: bool = True, smooth: float = 0.0
    ) -> None:
        if region not in REGIONS:
            raise choice_error("region", region, REGIONS)
        if tolerance < 0:
            raise ConfigError(f"tolerance={tolerance} is not valid; accepted: pixels >= 0.")
        self.tolerance = float(tolerance)
        self.region = region
        self.strict = bool(strict)
        self.smooth = float(smooth)
        self.requires = frozenset({region})

    def regions(self, batch: Batch, height: int, width: int, device: torch.device) -> Tensor:
        """The class regions at the original size ``[B, H, W]`` (one size for the whole batch)."""
        if self.region == "masks":
            masks = batch.masks.to(device)
            if masks.shape[-2:] != (height, width):
                masks = F.interpolate(masks[:, None].float(), size=(height, width), mode="nearest")[:, 0] > 0.5
            return masks
        return boxes_to_masks(batch.boxes, height, width, device)

    def hits(self, maps: Tensor, omega: Tensor) -> Tensor:
        """1.0 where the first maximum of ``maps`` is within tolerance of ``omega`` (both ``[B, H, W]``)."""
        h, w = maps.shape[-2:]
        if self.smooth > 0:
            maps = gaussian_smooth(maps, self.smooth * max(h, w))
        u, v = first_argmax(maps)
        vv = torch.arange(h, device=maps.device)[None, :, None]
        uu = torch.arange(w, device=maps.device)[None, None, :]
        d2 = (vv - v[:, None, None]) ** 2 + (uu - u[:, None, None]) ** 2
        near = d2 < self.tolerance**2 if self.strict else d2 <= self.tolerance**2
        return (near & omega).flatten(1).any(1).float()

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        b = maps.shape[0]
        scores = torch.empty(b, device=maps.device)
        sizes = batch.orig_sizes.tolist()
        for size in sorted({tuple(s) for s in sizes}):  # one group per original size
            idx = [i for i, s in enumerate(sizes) if tuple(s) == size]
            sel = torch.tensor(idx, device=maps.device)
            m = maps[sel]
            if tuple(m.shape[-2:]) != size:
                m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            sub = Batch(
                images=batch.images[sel],
                targets=batch.targets[sel],
                ids=[batch.ids[i] for i in idx],
                orig_sizes=batch.orig_sizes[idx],
                boxes=None if batch.boxes is None else [batch.boxes[i] for i in idx],
                masks=None if batch.masks is None else batch.masks[sel],
            )
            scores[sel] = self.hits(m, self.regions(sub, size[0], size[1], maps.device))
        no_region = torch.tensor(
            [len(bx) == 0 for bx in batch.boxes] if self.region == "boxes" and batch.boxes is not None
            else [False] * b,
            device=maps.device,
        )
        scores = torch.where(no_region, torch.full_like(scores, float("nan")), scores)
        out = MetricOutput(scores={"": scores}, flags={"": no_region}, flag_reason="no_region")
        difficult = batch.difficult.to(maps.device) if len(batch.difficult) == b else None
        if difficult is not None and bool(difficult.any()):
            out.scores["difficult"] = torch.where(difficult, scores, torch.full_like(scores, float("nan")))
            out.flags["difficult"] = no_region
            out.omit["difficult"] = ~difficult
        return out
