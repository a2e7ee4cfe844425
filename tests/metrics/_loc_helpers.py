"""Builders and independent (numpy/scipy, loop-based) references for the localisation tests."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from bench.core.batch import Batch
from bench.core.context import Context


def make_ctx(seed: int = 0) -> Context:
    return Context(model=nn.Identity(), seed=seed)


def make_batch(
    maps: torch.Tensor,
    boxes: list[list[list[float]]] | None = None,
    orig_sizes: list[tuple[int, int]] | None = None,
    masks: torch.Tensor | None = None,
    difficult: list[bool] | None = None,
    targets: list[int] | None = None,
) -> Batch:
    """A batch whose images match ``maps`` ``[B, H, W]`` (the images are not used by these metrics)."""
    b, h, w = maps.shape
    return Batch(
        images=torch.zeros(b, 3, h, w),
        targets=torch.tensor(targets if targets is not None else [0] * b),
        ids=[f"img{i}" for i in range(b)],
        orig_sizes=torch.tensor(orig_sizes if orig_sizes is not None else [(h, w)] * b),
        boxes=None
        if boxes is None
        else [torch.tensor(bx, dtype=torch.float32).reshape(-1, 4) for bx in boxes],
        masks=masks,
        difficult=torch.tensor(difficult if difficult is not None else [False] * b),
    )


def ref_box_mask(boxes: list[list[float]], h: int, w: int) -> np.ndarray:
    """Loop rasterisation: pixel (v, u) is inside when x0 <= u < x1 and y0 <= v < y1."""
    out = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        for v in range(h):
            for u in range(w):
                if x0 <= u < x1 and y0 <= v < y1:
                    out[v, u] = True
    return out


def ref_torchray_evaluate(mask: np.ndarray, point: tuple[float, float], tolerance: float) -> bool:
    """TorchRay's ``PointingGame.evaluate``: hit when (v - y)^2 + (u - x)^2 < tol^2 on the mask."""
    v, u = np.meshgrid(
        (np.arange(mask.shape[0]) - point[1]) ** 2,
        (np.arange(mask.shape[1]) - point[0]) ** 2,
        indexing="ij",
    )
    return bool((mask & ((v + u) < tolerance**2)).any())


def ref_point(saliency: np.ndarray) -> tuple[int, int]:
    """TorchRay's ``_saliency_to_point``: ``(u, v)`` of numpy's first argmax in row-major order."""
    idx = int(np.argmax(saliency.reshape(-1)))
    return idx % saliency.shape[1], idx // saliency.shape[1]


def ref_imsmooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """TorchRay's ``imsmooth(..., padding_mode='replicate')`` in float64 with scipy."""
    width = math.ceil(4 * sigma)
    filt = np.exp(-0.5 * (np.arange(-width, width + 1) / sigma) ** 2)
    filt /= filt.sum()
    y = ndimage.correlate1d(x.astype(np.float64), filt, axis=0, mode="nearest")
    return ndimage.correlate1d(y, filt, axis=1, mode="nearest")


def dilated_area(omega: np.ndarray, tolerance: float, strict: bool = True) -> int:
    """Number of pixels whose Euclidean distance to ``omega`` is < tolerance (<= if not strict)."""
    dist = ndimage.distance_transform_edt(~omega)
    return int((dist < tolerance).sum() if strict else (dist <= tolerance).sum())


def ref_mass(r: np.ndarray, gt: np.ndarray) -> float:
    """CLEVR-XAI reference (Arras): relevance inside / total, float64."""
    r = r.astype(np.float64)
    return float((r * gt).sum() / r.sum())


def ref_rank(r: np.ndarray, gt: np.ndarray) -> float:
    """CLEVR-XAI reference: fraction of the |gt| most relevant pixels that lie in gt (no ties)."""
    order = np.argsort(r.astype(np.float64).ravel())[::-1]
    n = int(gt.sum())
    return float(gt.ravel()[order[:n]].sum() / n)
