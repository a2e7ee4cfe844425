"""Complexity metrics: how concentrated is the map, whatever it points at?

Both score the non-negative relevance ``R`` of the map (``pooling``, as the localisation metrics:
``abs`` by default, as Quantus' ``abs=True``). Both are invariant to a positive rescaling of ``R``,
so no normalisation key exists. NaN, flagged ``degenerate``, where ``R`` sums to zero (a constant
zero map), has a negative value with ``pooling: none``, or a non-finite value.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import check_choice
from bench.metrics.base import Category, Metric, MetricOutput, Stability
from bench.metrics.localisation import POOLINGS, nonnegative


class _MapStatistic(Metric):
    category = Category.COMPLEXITY
    stability = Stability.ROUNDING  # symmetric in the values: a swap of near-ties changes nothing

    def __init__(self, pooling: str = "abs") -> None:
        self.pooling = check_choice("pooling", pooling, POOLINGS)

    def statistic(self, r: Tensor) -> Tensor:
        """One value ``[B]`` per relevance map ``r`` ``[B, N]`` (non-negative, positive sum)."""
        raise NotImplementedError

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        r, bad = nonnegative(maps, self.pooling)
        r = r.flatten(1).double()
        r = torch.where(bad[:, None], torch.ones_like(r), r)  # keep the arithmetic finite
        scores = self.statistic(r).float()
        scores = torch.where(bad, torch.full_like(scores, float("nan")), scores)
        return MetricOutput(scores={"": scores}, flags={"": bad}, flag_reason="degenerate")


class Complexity(_MapStatistic):
    """Complexity (Bhatt et al., IJCAI 2020): the entropy of the map's fractional contributions.

    ``H = -sum_p P(p) ln P(p)`` with ``P = R / sum R`` (natural log, ``0 ln 0 = 0``); lower is a
    simpler map. Range ``[0, ln N]``: 0 for a single pixel, ``ln N`` for a constant map.
    Quantus' ``Complexity`` adds 1e-12 inside the log.

    Args:
        pooling: ``abs`` | ``positive`` | ``none`` (see :data:`bench.metrics.localisation.POOLINGS`).
    """

    higher_is_better = False
    score_range = (0.0, None)  # an entropy
    citation = (
        "Bhatt, Weller, Moura. Evaluating and Aggregating Feature-based Model Explanations. "
        "IJCAI 2020."
    )

    def statistic(self, r: Tensor) -> Tensor:
        p = r / r.sum(1, keepdim=True)
        return -torch.special.xlogy(p, p).sum(1)


class Sparseness(_MapStatistic):
    """Sparseness (Chalasani et al., ICML 2020): the Gini index of the map.

    ``G = sum_i (2i - N - 1) R_(i) / (N sum R)`` with ``R_(1) <= ... <= R_(N)`` sorted; higher is a
    sparser map. Range ``[0, 1 - 1/N]``: 0 for a constant map, ``1 - 1/N`` for a single pixel.
    Quantus' ``Sparseness`` adds 1e-7 to every value first.

    Args:
        pooling: ``abs`` | ``positive`` | ``none`` (see :data:`bench.metrics.localisation.POOLINGS`).
    """

    higher_is_better = True
    score_range = (0.0, 1.0)  # a Gini index
    citation = (
        "Chalasani, Chen, Chowdhury, Wu, Jha. Concise Explanations of Neural Networks using "
        "Adversarial Training. ICML 2020."
    )

    def statistic(self, r: Tensor) -> Tensor:
        n = r.shape[1]
        s = r.sort(1).values
        i = torch.arange(1, n + 1, device=r.device, dtype=r.dtype)
        return ((2 * i - n - 1) * s).sum(1) / (n * s.sum(1))
