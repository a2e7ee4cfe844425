"""Faithfulness metrics: does removing what the map calls important change the model's output?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor

from bench.core.batch import Batch
from bench.core.context import Context, class_probabilities
from bench.core.errors import ConfigError, check_choice, check_int, check_number
from bench.core.ranking import TIES, descending_order, pearson, rank_pixels, ranks_of
from bench.metrics.base import (
    Category,
    Metric,
    MetricOutput,
    OrderCurves,
    OrderGap,
    Range,
    Stability,
)

TARGETS = ("prediction", "label")
SCORES = ("probability", "logit")


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


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under ``curve`` ``[B, T]`` on a uniform grid over [0, 1] (RISE's ``auc``)."""
    n = curve.shape[1] - 1
    return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / n


def box_blur(images: Tensor, size: int) -> Tensor:
    """Per-channel uniform ``size x size`` blur of ``images`` ``[B, C, H, W]``, zero padding size//2."""
    kernel = torch.full((size, size), 1.0 / (size * size))
    return blur(images, kernel)


def explained_targets(ctx: Context, batch: Batch, rule: str) -> Tensor:
    """The class ``[B]`` each image is scored on: the top-1 prediction or the label."""
    return ctx.predictions(batch.images) if rule == "prediction" else batch.targets


def target_scores(
    logits: Tensor, targets: Tensor, score: str, probabilities: str = "softmax"
) -> Tensor:
    """Probability (the model's ``probabilities``: softmax, or a sigmoid per class for a
    multi-label head) or logit ``[N]`` of ``targets`` ``[N]`` from ``logits`` ``[N, C]``."""
    out = class_probabilities(logits, probabilities) if score == "probability" else logits
    return out.gather(1, targets[:, None]).squeeze(1)


def perturbation_curves(
    ctx: Context,
    start: Tensor,
    finish: Tensor,
    rank: Tensor,
    counts: Tensor,
    targets: Tensor,
    score: str,
) -> Tensor:
    """Scores ``[B, R, T]`` along R perturbation orders of T steps, all batched through ``map_forward``.

    Args:
        start: float ``[B, C, H, W]``, the images before any change.
        finish: float ``[B, C, H, W]``, the value each pixel takes once changed.
        rank: long ``[B, R, H*W]``: under order ``r`` a pixel changes once ``counts[t] > rank``
            (pixels of one patch share a rank).
        counts: long ``[T]``, how many rank units are changed at each point of the curve.
        targets: long ``[B]``, the class scored.
        score: ``probability | logit``.
    """
    b, _, h, w = start.shape
    r_len, t_len = rank.shape[1], counts.shape[0]
    per_image = r_len * t_len

    def make(sl: slice) -> Tensor:
        k = torch.arange(sl.start, sl.stop, device=start.device)
        bi, ri, ti = k // per_image, (k // t_len) % r_len, k % t_len
        changed = (rank[bi, ri] < counts[ti, None]).view(-1, 1, h, w)
        return torch.where(changed, finish[bi], start[bi])

    def reduce(sl: slice, logits: Tensor) -> Tensor:
        bi = torch.arange(sl.start, sl.stop, device=start.device) // per_image
        return target_scores(logits, targets[bi], score, ctx.probabilities)

    return ctx.map_forward(b * per_image, make, reduce).view(b, r_len, t_len)


class _Probabilities(Metric):
    """A score bounded (``score_range``) only where it is made of the target's probabilities
    (``score: probability``); a logit score is unbounded."""

    @classmethod
    def range_of(cls, key: str, settings: Mapping[str, Any]) -> Range | None:
        if settings.get("score", "probability") != "probability":
            return None
        return super().range_of(key, settings)


class _SubstrateCurve(Metric):
    """What the curves between an image and a substrate (RISE's deletion and insertion, Gomez et
    al.'s) share: pixels move in the map's order between the image and a substrate (one of
    ``substrates``; the class's ``default_substrate`` when the key is null), and the class
    explained (``target``) is scored as a probability or a logit (``score``)."""

    category = Category.FAITHFULNESS
    stability = Stability.RANKING  # the pixel order: near-tied pixels may swap
    substrates = ("zero", "blur")
    default_substrate = "zero"

    def check_scoring(self, substrate: str | None, target: str, score: str) -> None:
        """Check and keep the ``substrate``, ``target`` and ``score`` keys."""
        self.substrate = check_choice(
            "substrate", substrate or self.default_substrate, self.substrates
        )
        self.target = check_choice("target", target, TARGETS)
        self.score = check_choice("score", score, SCORES)


class _PixelCurve(_SubstrateCurve, _Probabilities):
    """Shared engine of deletion and insertion: ``step`` pixels move from ``start`` to ``finish``."""

    score_range = (0.0, 1.0)  # an area under a probability curve
    citation = "Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018."

    def __init__(
        self,
        step: int = 224,
        substrate: str | None = None,
        target: str = "prediction",
        score: str = "probability",
        ties: str = "stable",
        blur_size: int = 11,
        blur_sigma: float = 5.0,
    ) -> None:
        self.step = check_int("step", step, minimum=1)
        self.check_scoring(substrate, target, score)
        self.ties = check_choice("ties", ties, TIES)
        self.blur_size = check_int("blur_size", blur_size, minimum=1)
        if self.blur_size % 2 == 0:
            raise ConfigError(f"blur_size={blur_size} is not valid; accepted: an odd integer >= 1.")
        self.blur_sigma = check_number("blur_sigma", blur_sigma, above=0)
        self._kernel = rise_blur_kernel(self.blur_size, self.blur_sigma)

    def check_image(self, height: int, width: int) -> None:
        pixels = height * width
        if self.step >= pixels:
            raise ConfigError(
                f"step={self.step} is not valid for {height}x{width} images: the curve would have "
                f"2 points (the image and the substrate); accepted: 1..{pixels - 1} pixels per step "
                f"(the protocol's {width} is one row of the image per step)."
            )
        if self.substrate == "blur" and self.blur_size > min(height, width):
            raise ConfigError(
                f"blur_size={self.blur_size} is not valid for {height}x{width} images: the kernel "
                f"is larger than the image; accepted: an odd integer in 1..{min(height, width)}."
            )

    def substrate_of(self, images: Tensor) -> Tensor:
        """The fully perturbed images: zeros in normalised space (the mean colour) or RISE's blur."""
        return torch.zeros_like(images) if self.substrate == "zero" else blur(images, self._kernel)

    def endpoints(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def curve(self, ctx: Context, batch: Batch, maps: Tensor) -> Tensor:
        """Scores ``[B, n_steps + 1]`` of the target class along the perturbation path."""
        x = batch.images
        n_steps = math.ceil(x.shape[-2] * x.shape[-1] / self.step)
        targets = explained_targets(ctx, batch, self.target)
        rank = rank_pixels(maps, self.ties, ctx.generator() if self.ties == "random" else None)
        start, finish = self.endpoints(x)
        counts = torch.arange(n_steps + 1, device=x.device) * self.step
        return perturbation_curves(ctx, start, finish, rank[:, None], counts, targets, self.score)[
            :, 0
        ]

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        curve = self.curve(ctx, batch, maps)
        return MetricOutput(scores={"": trapezoid_auc(curve)}, curves={"": curve})


class Deletion(_PixelCurve):
    """Deletion AUC (RISE): most salient pixels first move to the substrate; lower is better.

    Protocol (docs/PROTOCOLS.md §1): ``step`` pixels per step in all channels, cumulative; substrate
    zeros in normalised space; softmax probability of the model's top-1 class; the curve has
    ``ceil(N / step) + 1`` points; AUC by the trapezoid rule over [0, 1].
    """

    higher_is_better = False

    def endpoints(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return images, self.substrate_of(images)


class Insertion(_PixelCurve):
    """Insertion AUC (RISE): most salient pixels first move from the blurred image to the original.

    Protocol (docs/PROTOCOLS.md §1): start = RISE's 11x11, sigma 5 blur of the normalised image (zero
    padding 5), finish = the image; otherwise as :class:`Deletion`. Higher is better.
    """

    higher_is_better = True
    default_substrate = "blur"

    def endpoints(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.substrate_of(images), images


class _GomezCurve(_SubstrateCurve):
    """Shared engine of DAUC / IAUC / DC / IC (Gomez et al.; package ``saliency-maps-metrics``).

    The map is ranked on its native grid (``map_size``; ``None`` = the input's resolution), the
    mask of the ``k`` top cells is upsampled nearest to the image, ``ceil(cells / per_step)``
    steps of ``per_step = cells // min(max_steps, cells)`` cells each (the last step takes what
    is left, so there are more than ``max_steps`` steps when ``max_steps`` does not divide the
    cells; exactly 196 at 112 or 224 px), the curve starts with the unchanged image. Deletion fills literal 0 (normalised space), insertion starts from a box blur
    of size ``max(H // 5, 9)`` (made odd), zero padding. The per-step saliency is the mean map
    value of the cells changed in that step.

    Differences from the package, each deliberate: the explained class of insertion is the
    prediction on the *unchanged* image (the package takes it on the blurred image); ties are
    broken by cell index (the package's ``topk`` leaves them arbitrary); ``score`` is a key (the
    package scores the raw model output, i.e. whatever the model ends with).
    """

    citation = (
        "Gomez, Fréour, Mouchère. Metrics for Saliency Map Evaluation of Deep Learning Explanation "
        "Methods. ICPRAI 2022."
    )
    insertion = False

    def __init__(
        self,
        max_steps: int = 196,
        map_size: list[int] | None = None,
        substrate: str | None = None,
        target: str = "prediction",
        score: str = "probability",
    ) -> None:
        self.max_steps = check_int("max_steps", max_steps, minimum=1)
        self.check_scoring(substrate, target, score)
        if map_size is not None:
            sides = [map_size] * 2 if isinstance(map_size, int) else list(map_size)
            if len(sides) != 2:
                raise ConfigError(
                    f"map_size={map_size} is not valid; accepted: null or [h, w] >= 1."
                )
            map_size = [check_int("map_size", v, minimum=1) for v in sides]
        self.map_size = map_size

    def check_image(self, height: int, width: int) -> None:
        if self.map_size is not None and (self.map_size[0] > height or self.map_size[1] > width):
            raise ConfigError(
                f"map_size={self.map_size} is not valid for {height}x{width} images: a grid finer "
                f"than the image; accepted: null (the input's grid) or [h, w] <= [{height}, {width}]."
            )

    def substrate_of(self, images: Tensor) -> Tensor:
        if self.substrate == "zero":
            return torch.zeros_like(images)
        size = max(images.shape[-2] // 5, 9)
        return box_blur(images, size + 1 if size % 2 == 0 else size)

    def curve(self, ctx: Context, batch: Batch, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Scores ``[B, T + 1]`` along the path and the mean saliency ``[B, T]`` of each step."""
        x = batch.images
        b, _, h, w = x.shape
        grid = (
            maps
            if self.map_size is None
            else F.adaptive_avg_pool2d(maps[:, None], self.map_size)[:, 0]
        )
        hg, wg = grid.shape[-2:]
        cells = hg * wg
        per_step = cells // min(self.max_steps, cells)
        n_steps = math.ceil(cells / per_step)
        order = descending_order(grid)
        rank = ranks_of(order)
        rank = F.interpolate(rank.view(b, 1, hg, wg).float(), size=(h, w), mode="nearest")
        counts = (torch.arange(n_steps + 1, device=x.device) * per_step).clamp(max=cells)
        substrate = self.substrate_of(x)
        start, finish = (substrate, x) if self.insertion else (x, substrate)
        targets = explained_targets(ctx, batch, self.target)
        curve = perturbation_curves(
            ctx, start, finish, rank.long().view(b, 1, h * w), counts, targets, self.score
        )[:, 0]
        csum = F.pad(grid.flatten(1).gather(1, order).cumsum(1), (1, 0))
        step_saliency = (csum[:, counts[1:]] - csum[:, counts[:-1]]) / (counts[1:] - counts[:-1])
        return curve, step_saliency


class _GomezAUC(_Probabilities, _GomezCurve):
    score_range = (0.0, 1.0)  # an area under a probability curve

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        curve, _ = self.curve(ctx, batch, maps)
        return MetricOutput(scores={"": trapezoid_auc(curve)}, curves={"": curve})


class _GomezCorrelation(_GomezCurve):
    score_range = (-1.0, 1.0)  # a correlation, whatever the curve scores

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        curve, saliency = self.curve(ctx, batch, maps)
        change = curve[:, 1:] - curve[:, :-1]
        corr = pearson(-change if not self.insertion else change, saliency)
        return MetricOutput(
            scores={"": corr}, curves={"": curve}, flags={"": corr.isnan()}, flag_reason="constant"
        )


class DAUC(_GomezAUC):
    """DAUC (Gomez et al. 2022): deletion AUC on the map's native grid, literal-0 fill; lower is better."""

    higher_is_better = False


class IAUC(_GomezAUC):
    """IAUC (Gomez et al. 2022): insertion AUC from a box-blurred image; higher is better."""

    higher_is_better = True
    default_substrate = "blur"
    insertion = True


class DC(_GomezCorrelation):
    """Deletion correlation (Gomez et al. 2022): Pearson of each step's score drop and its mean saliency.

    Higher is better; NaN (flagged ``constant``) when the curve or the per-step saliency is constant.
    """

    higher_is_better = True


class IC(_GomezCorrelation):
    """Insertion correlation (Gomez et al. 2022): Pearson of each step's score gain and its mean saliency.

    Higher is better; NaN (flagged ``constant``) when the curve or the per-step saliency is constant.
    """

    higher_is_better = True
    default_substrate = "blur"
    insertion = True


FILLS = ("min", "mean", "max")
ORDERS = ("morf", "lerf")


class _PixelFlipping(_Probabilities):
    """Shared engine of MoRF / LeRF pixel flipping (Bach et al. 2015; Samek et al. 2017).

    The map is averaged over non-overlapping ``patch_size`` tiles, tiles are ordered most relevant
    first (MoRF) or least relevant first (LeRF), ties by tile index; ``step`` tiles are replaced
    per step, in all channels, cumulatively, by ``fill``: a number in normalised space (0 = the
    dataset mean colour) or a per-image statistic of the unchanged image over all channels and
    pixels (``min`` = Quantus' "black", ``mean``, ``max`` = Quantus' "white"). The curve holds
    ``ceil(tiles / step) + 1`` points (unchanged image first); its area is the trapezoid over [0, 1].
    """

    category = Category.FAITHFULNESS
    score_range = (0.0, 1.0)  # an area under a probability curve
    stability = Stability.RANKING  # the pixel order: near-tied pixels may swap
    citation = (
        "Bach et al. On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise "
        "Relevance Propagation. PLOS ONE 2015; Samek et al. Evaluating the Visualization of What a "
        "Deep Neural Network Has Learned. IEEE TNNLS 2017."
    )
    orders: tuple[str, ...] = ()

    def __init__(
        self,
        patch_size: int = 1,
        step: int = 224,
        fill: float | str = 0.0,
        target: str = "label",
        score: str = "probability",
    ) -> None:
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.step = check_int("step", step, minimum=1)
        if isinstance(fill, str):
            self.fill = check_choice("fill", fill, FILLS)
        elif isinstance(fill, int | float) and not isinstance(fill, bool):
            self.fill = check_number("fill", fill)
        else:
            raise ConfigError(
                f"fill={fill!r} is not valid; accepted: a number or one of {', '.join(FILLS)}."
            )
        self.target = check_choice("target", target, TARGETS)
        self.score = check_choice("score", score, SCORES)

    def check_image(self, height: int, width: int) -> None:
        if self.patch_size > min(height, width):
            raise ConfigError(
                f"patch_size={self.patch_size} is not valid for {height}x{width} images: a tile "
                f"larger than the image; accepted: 1..{min(height, width)}."
            )
        tiles = (height // self.patch_size) * (width // self.patch_size)
        if self.step >= tiles:
            raise ConfigError(
                f"step={self.step} is not valid for {height}x{width} images in {self.patch_size} px "
                f"tiles ({tiles} tiles): the curve would have 2 points; accepted: 1..{tiles - 1} "
                "tiles per step."
            )

    def fill_of(self, images: Tensor) -> Tensor:
        """The replacement images ``[B, C, H, W]``."""
        if not isinstance(self.fill, str):
            return torch.full_like(images, self.fill)
        flat = images.flatten(1)
        value = {"min": flat.amin(1), "mean": flat.mean(1), "max": flat.amax(1)}[self.fill]
        return value.view(-1, 1, 1, 1).expand_as(images)

    def curves(self, ctx: Context, batch: Batch, maps: Tensor) -> Tensor:
        """Scores ``[B, len(orders), n_steps + 1]`` of the target class, one row per order; an
        order already computed for this batch and maps by a pixel-flipping metric with the same
        settings in the job (``pixel_flipping_abc`` beside ``pixel_flipping_morf``) is reused."""
        settings = (self.patch_size, self.step, self.fill, self.target, self.score)
        return _FLIPPING_CURVES.get(
            ctx, batch, maps, settings, self.orders, lambda o: self._curves(ctx, batch, maps, o)
        )

    def _curves(self, ctx: Context, batch: Batch, maps: Tensor, orders: tuple[str, ...]) -> Tensor:
        x = batch.images
        b, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ConfigError(
                f"{type(self).__name__}: patch_size={p} must divide the image size {h}x{w}."
            )
        tiles = F.avg_pool2d(maps[:, None], p)[:, 0] if p > 1 else maps
        ranks = []
        for order in orders:  # at most two orders, each ranked for the whole batch at once
            r = rank_pixels(tiles if order == "morf" else -tiles).view(b, h // p, w // p)
            ranks.append(r.repeat_interleave(p, 1).repeat_interleave(p, 2).flatten(1))
        n_tiles = tiles.shape[-2] * tiles.shape[-1]
        n_steps = math.ceil(n_tiles / self.step)
        counts = torch.arange(n_steps + 1, device=x.device) * self.step
        targets = explained_targets(ctx, batch, self.target)
        rank = torch.stack(ranks, 1)
        return perturbation_curves(ctx, x, self.fill_of(x), rank, counts, targets, self.score)


#: The curves of the last batch, per order, shared by the pixel-flipping metrics of a job.
_FLIPPING_CURVES = OrderCurves()


class _OneOrderFlipping(_PixelFlipping):
    """Pixel flipping in one order: the score is the area under its curve."""

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        curve = self.curves(ctx, batch, maps)[:, 0]
        return MetricOutput(scores={"": trapezoid_auc(curve)}, curves={"": curve})


class MoRF(_OneOrderFlipping):
    """MoRF pixel flipping: area under the curve when the most relevant tiles go first; lower is better."""

    higher_is_better = False
    orders = ("morf",)


class LeRF(_OneOrderFlipping):
    """LeRF pixel flipping: area under the curve when the least relevant tiles go first; higher is better."""

    higher_is_better = True
    orders = ("lerf",)


class PixelFlippingABC(OrderGap, _PixelFlipping):
    """Area between the LeRF and MoRF pixel-flipping curves, AUC(LeRF) - AUC(MoRF); higher is better."""

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        curves = self.curves(ctx, batch, maps)
        return MetricOutput(
            scores={"": trapezoid_auc(curves[:, 1]) - trapezoid_auc(curves[:, 0])},
            curves={"morf": curves[:, 0], "lerf": curves[:, 1]},
        )
