"""Reference-point maps every benchmark needs: they use no model knowledge."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import check_int, check_number
from bench.core.rng import content_keys, hash_uniform
from bench.methods.base import Method


class Random(Method):
    """Uniform i.i.d. noise maps: the chance level of every metric.

    The map is a hash of ``(seed, image content, pixel index)``, computed on the device: the same
    image always gets the same map, whatever batch it is in, and different images get independent
    maps.

    Args:
        seed: the run seed.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__(reduction="sum")
        self.seed = check_int("seed", seed)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        b, _, h, w = images.shape
        idx = torch.arange(h * w, device=images.device, dtype=torch.long)
        return hash_uniform(content_keys(images, self.seed)[:, None], idx[None]).view(b, h, w)


class Sobel(Method):
    """Sobel edge magnitude of the input: a model-blind edge detector.

    ``sqrt(gx^2 + gy^2)`` per channel with the 3x3 Sobel kernels (replicate padding), pooled over
    channels with ``reduction`` (``l2`` by default). Adebayo et al. (NeurIPS 2018) show saliency maps
    that resemble it; it is the "is this just an edge detector?" reference.
    """

    def __init__(self, reduction: str = "l2") -> None:
        super().__init__(reduction=reduction)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        x = images.detach().float()
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
        kernels = torch.stack([gx, gx.T])[:, None]  # [2, 1, 3, 3]
        c = x.shape[1]
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        g = F.conv2d(padded, kernels.repeat(c, 1, 1, 1), groups=c)  # [B, 2C, H, W]
        g = g.view(x.shape[0], c, 2, *x.shape[-2:])
        return g.pow(2).sum(2).sqrt()  # [B, C, H, W]


class CentreGaussian(Method):
    """A centred isotropic Gaussian, the same for every image: the centre-bias reference.

    The pointing game's centre baseline (docs/PROTOCOLS.md §3) as a map.

    Args:
        sigma: standard deviation as a fraction of ``max(H, W)``.
    """

    def __init__(self, sigma: float = 0.25) -> None:
        super().__init__(reduction="sum")
        self.sigma = check_number("sigma", sigma, above=0)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        b, _, h, w = images.shape
        s = self.sigma * max(h, w)
        v = torch.arange(h, device=images.device, dtype=torch.float32) - (h - 1) / 2
        u = torch.arange(w, device=images.device, dtype=torch.float32) - (w - 1) / 2
        g = torch.exp(-(v[:, None] ** 2 + u[None, :] ** 2) / (2 * s * s))
        return g.expand(b, h, w)
