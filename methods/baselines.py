"""Reference-point maps every benchmark needs: they use no model knowledge."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import Method

_MASK63 = (1 << 63) - 1


def _mix(x: Tensor) -> Tensor:
    """SplitMix64-style integer hash of int64 ``x`` (wrapping arithmetic), non-negative result."""
    x = x * 0x5DEECE66D + 0xB
    x = x ^ (x >> 31)
    x = x * 0x2545F4914F6CDD1D  # int64 multiplication wraps, which is what a hash wants
    x = x ^ (x >> 29)
    x = x * 0x27BB2EE687B0B0FD
    x = x ^ (x >> 32)
    return x & _MASK63


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
        self.seed = int(seed)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        b, _, h, w = images.shape
        q = (images.detach().flatten(1).double() * 4096).round().long()  # content, quantised
        coef = _mix(torch.arange(q.shape[1], device=q.device, dtype=torch.long) + 7919)
        key = _mix((q * coef).sum(1) + self.seed)  # [B]; int64 sums wrap
        idx = torch.arange(h * w, device=images.device, dtype=torch.long)
        bits = _mix(key[:, None] ^ _mix(idx + 0x9E3779B9)[None])
        return ((bits >> 11).double() / float(1 << 52)).float().view(b, h, w)
