"""Pixel rankings and correlations, batched on the device: the one implementation of each.

Every order-based metric ranks pixels with :func:`descending_order` / :func:`ranks_of` (deletion,
insertion, pixel flipping, the Gomez et al. variants, ROAD, relevance rank accuracy); every
correlation is :func:`pearson` or :func:`spearman` (scipy's definitions, float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.core.errors import check_choice

#: How ties in a ranking are broken: by pixel index (row-major) or by a seeded permutation.
TIES = ("stable", "random")


def descending_order(
    values: Tensor, ties: str = "stable", generator: torch.Generator | None = None
) -> Tensor:
    """Indices ``[B, N]`` that sort each row of ``values`` (``[B, ...]``, flattened) descending.

    ``ties="stable"`` keeps tied entries in index order; ``"random"`` orders them by a random
    permutation drawn from ``generator``.
    """
    check_choice("ties", ties, TIES)
    flat = values.flatten(1)
    if ties == "random":
        b, n = flat.shape
        perm = torch.rand(b, n, generator=generator, device=flat.device).argsort(dim=1)
        return perm.gather(1, flat.gather(1, perm).argsort(dim=1, descending=True, stable=True))
    return flat.argsort(dim=1, descending=True, stable=True)


def ranks_of(order: Tensor) -> Tensor:
    """The inverse permutation of ``order`` ``[B, N]``: the 0-based position of every entry."""
    b, n = order.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(b, n))
    return rank


def rank_pixels(
    maps: Tensor, ties: str = "stable", generator: torch.Generator | None = None
) -> Tensor:
    """Rank ``[B, N]`` of every pixel when ordered by ``maps`` ``[B, H, W]`` descending (0 = most salient)."""
    return ranks_of(descending_order(maps, ties, generator))


def average_ranks(x: Tensor) -> Tensor:
    """Average ranks (1-based, ties share their mean rank, as in scipy) of ``x`` ``[B, N]`` along dim 1."""
    b, n = x.shape
    s, order = x.sort(dim=1)
    pos = torch.arange(n, device=x.device).expand(b, n)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    # a tie group spans [start, end] of the sorted row; its members share the mean rank
    start = torch.where(new, pos, 0).cummax(1).values
    ends = torch.ones_like(new)
    ends[:, :-1] = new[:, 1:]
    end = torch.where(ends, pos, n).flip(1).cummin(1).values.flip(1)
    avg = (start + end).double() / 2 + 1
    return torch.empty_like(avg).scatter_(1, order, avg)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation ``[B]`` (float64) of the rows of ``a`` and ``b`` ``[B, N]``; NaN for a constant row."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt()
    num = (a * b).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation ``[B]`` of the rows of ``a`` and ``b`` ``[B, N]`` (scipy's definition)."""
    a, b = a.flatten(1), b.flatten(1)
    out = pearson(average_ranks(a), average_ranks(b))
    bad = a.isnan().any(1) | b.isnan().any(1)
    return torch.where(bad, torch.full_like(out, float("nan")), out)
