"""Faithfulness metrics: does removing what the map calls important change the model's output?"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor

from bench.context import Context
from bench.data.base import Batch
from bench.errors import ConfigError, choice_error
from metrics.base import Metric, MetricOutput

TARGETS = ("prediction", "label")
SCORES = ("probability", "logit")
TIES = ("stable", "random")


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's blur kernel ``[size, size]``: a centred delta Gaussian-filtered (reflect mode) by ``sigma``."""
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma)).float()


def blur(images: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel convolution of ``images`` ``[B, C, H, W]`` with ``kernel`` ``[k, k]``, zero padding k//2."""
    c = images.shape[1]
    weight = kernel.to(images)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(images, weight, padding=kernel.shape[-1] // 2, groups=c)


def rank_pixels(maps: Tensor, ties: str = "stable", generator: torch.Generator | None = None) -> Tensor:
    """Rank ``[B, N]`` of every pixel when ordered by ``maps`` ``[B, H, W]`` descending (0 = most salient).

    ``ties="stable"`` breaks ties by pixel index (row-major); ``"random"`` by a seeded permutation.
    """
    flat = maps.flatten(1)
    b, n = flat.shape
    if ties == "random":
        perm = torch.rand(b, n, generator=generator, device=flat.device).argsort(dim=1)
        order = perm.gather(1, flat.gather(1, perm).argsort(dim=1, descending=True, stable=True))
    else:
        order = flat.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=flat.device).expand(b, n))
    return rank


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under ``curve`` ``[B, T]`` on a uniform grid over [0, 1] (RISE's ``auc``)."""
    n = curve.shape[1] - 1
    return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / n


class _PixelCurve(Metric):
    """Shared engine of deletion and insertion: ``step`` pixels move from ``start`` to ``finish``."""

    category = "faithfulness"
    citation = "Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018."
    substrates = ("zero", "blur")

    def __init__(
        self,
        step: int = 224,
        substrate: str = "zero",
        target: str = "prediction",
        score: str = "probability",
        ties: str = "stable",
        blur_size: int = 11,
        blur_sigma: float = 5.0,
    ) -> None:
        if step < 1:
            raise ConfigError(f"step={step} is not valid; accepted: an integer >= 1 (pixels per step).")
        for key, value, accepted in (
            ("substrate", substrate, self.substrates),
            ("target", target, TARGETS),
            ("score", score, SCORES),
            ("ties", ties, TIES),
        ):
            if value not in accepted:
                raise choice_error(key, value, accepted)
        self.step = int(step)
        self.substrate = substrate
        self.target = target
        self.score = score
        self.ties = ties
        self.blur_size = int(blur_size)
        self.blur_sigma = float(blur_sigma)
        self._kernel = rise_blur_kernel(self.blur_size, self.blur_sigma)

    def substrate_of(self, images: Tensor) -> Tensor:
        """The fully perturbed images: zeros in normalised space (the mean colour) or RISE's blur."""
        return torch.zeros_like(images) if self.substrate == "zero" else blur(images, self._kernel)

    def endpoints(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def curve(self, ctx: Context, batch: Batch, maps: Tensor) -> Tensor:
        """Scores ``[B, n_steps + 1]`` of the target class along the perturbation path."""
        x = batch.images
        b, _, h, w = x.shape
        n_steps = math.ceil(h * w / self.step)
        t_len = n_steps + 1
        targets = ctx.predictions(x) if self.target == "prediction" else batch.targets
        rank = rank_pixels(maps, self.ties, ctx.generator() if self.ties == "random" else None)
        start, finish = self.endpoints(x)
        counts = torch.arange(t_len, device=x.device) * self.step

        def make(sl: slice) -> Tensor:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            bi, ti = k // t_len, k % t_len
            changed = (rank[bi] < counts[ti, None]).view(-1, 1, h, w)
            return torch.where(changed, finish[bi], start[bi])

        def reduce(sl: slice, logits: Tensor) -> Tensor:
            bi = torch.arange(sl.start, sl.stop, device=x.device) // t_len
            out = logits.softmax(1) if self.score == "probability" else logits
            return out.gather(1, targets[bi, None]).squeeze(1)

        return ctx.map_forward(b * t_len, make, reduce).view(b, t_len)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        curve = self.curve(ctx, batch, maps)
        return MetricOutput(scores={"": trapezoid_auc(curve)}, curves={"": curve})


class Deletion(_PixelCurve):
    """Deletion AUC (RISE): most salient pixels first move to the substrate; lower is better.

    Protocol (PROTOCOLS.md §1): ``step`` pixels per step in all channels, cumulative; substrate
    zeros in normalised space; softmax probability of the model's top-1 class; the curve has
    ``ceil(N / step) + 1`` points; AUC by the trapezoid rule over [0, 1].
    """

    higher_is_better = False

    def endpoints(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return images, self.substrate_of(images)


class Insertion(_PixelCurve):
    """Insertion AUC (RISE): most salient pixels first move from the blurred image to the original.

    Protocol (PROTOCOLS.md §1): start = RISE's 11x11, sigma 5 blur of the normalised image (zero
    padding 5), finish = the image; otherwise as :class:`Deletion`. Higher is better.
    """

    higher_is_better = True

    def __init__(
        self,
        step: int = 224,
        substrate: str = "blur",
        target: str = "prediction",
        score: str = "probability",
        ties: str = "stable",
        blur_size: int = 11,
        blur_sigma: float = 5.0,
    ) -> None:
        super().__init__(step, substrate, target, score, ties, blur_size, blur_sigma)

    def endpoints(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.substrate_of(images), images
