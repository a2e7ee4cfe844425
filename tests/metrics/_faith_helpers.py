"""Helpers shared by the faithfulness, ROAD and robustness tests: tiny models, batches, contexts."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.core.batch import Batch
from bench.core.context import Context


class RegionMean(nn.Module):
    """The analytic model of docs/PROTOCOLS.md §7: one logit, the mean of ``x`` over region ``R`` (all channels)."""

    def __init__(self, region: Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: Tensor) -> Tensor:
        r = self.region
        return ((x * r).sum((1, 2, 3)) / (r.sum() * x.shape[1]))[:, None]


class LinearModel(nn.Module):
    """Logits ``x · W_k`` with weights ``[K, C, H, W]`` (a linear classifier on raw pixels)."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float())

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("nchw,kchw->nk", x, self.weight)


def tiny_cnn(num_classes: int = 3, seed: int = 0) -> nn.Module:
    """A small random CNN with non-trivial, smooth softmax outputs."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, num_classes),
    ).eval()
    with torch.no_grad():
        model[-1].weight.mul_(4.0)
    return model


def make_batch(
    images: Tensor, targets: Tensor | None = None, ids: list[str] | None = None
) -> Batch:
    b, _, h, w = images.shape
    return Batch(
        images=images,
        targets=torch.zeros(b, dtype=torch.long) if targets is None else targets,
        ids=ids or [f"img{i}" for i in range(b)],
        orig_sizes=torch.tensor([[h, w]] * b),
    )


def make_ctx(model: nn.Module, chunk_size: int = 64, seed: int = 0, method=None) -> Context:
    return Context(model=model, chunk_size=chunk_size, seed=seed, method=method)


def distinct_maps(b: int, h: int, w: int, seed: int = 0) -> Tensor:
    """Maps ``[B, H, W]`` with all values distinct (random permutations of 0..N-1, scaled)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(h * w, generator=g) for _ in range(b)]).float().view(
        b, h, w
    ) / (h * w)
