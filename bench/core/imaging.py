"""Small image operations shared by methods and metrics (kept here so neither reaches into the other)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_smooth(maps: Tensor, sigma: float) -> Tensor:
    """TorchRay's ``imsmooth`` of ``maps`` ``[B, H, W]``: separable Gaussian, support ``ceil(4 sigma)``,
    replicate padding (as ``torchray.attribution.common.saliency`` calls it); ``sigma <= 0`` = none."""
    if sigma <= 0:
        return maps
    radius = math.ceil(4 * sigma)
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    m = maps[:, None]
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return m[:, 0]
