"""Map similarities for the sanity checks, and the base class of every check that compares two maps.

Normalisations (Adebayo et al.'s "abs" and "signed" maps, Quantus' division by the maximum),
SSIM and HOG (scikit-image, numpy, one image at a time) and the batched rank correlations of
:mod:`bench.core.ranking`. :class:`MapComparison` holds the comparison keys every check shares
(similarities, normalisation, SSIM and HOG settings, the class explained), declared once; the
checks in :mod:`bench.metrics.randomisation` pass them through. A similarity is NaN where a map is
constant (no ranks, no structure); that image's score is flagged ``degenerate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import ConfigError, check_bool, check_choice, check_int, check_number
from bench.core.ranking import pearson, spearman
from bench.metrics.base import Category, Direction, Metric, Stability

SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim", "hog")
TARGETS = ("label", "original_prediction", "current_prediction")
NORMALISATIONS = ("percentile", "max")
STRUCTURE_INPUTS = ("abs", "signed")
HOG_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
CORRELATIONS = ("spearman", "pearson")

Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _percentile(x: Tensor, q: float) -> Tensor:
    """Per-row ``q``-th percentile ``[B, 1, 1]`` of ``x`` ``[B, H, W]`` (numpy's linear rule)."""
    return torch.quantile(x.flatten(1).double(), q / 100.0, dim=1).to(x.dtype)[:, None, None]


def normalise_abs(maps: Tensor, mode: str = "percentile", percentile: float = 99.0) -> Tensor:
    """The "abs" map ``[B, H, W]``: ``|m|`` scaled by its ``percentile`` and clipped to [0, 1]
    (Adebayo's reference), or by its maximum (``mode="max"``, Quantus' ``normalise_by_max`` + abs).
    A zero scale leaves the map unscaled."""
    a = maps.abs()
    scale = (
        _percentile(a, percentile) if mode == "percentile" else a.flatten(1).amax(1)[:, None, None]
    )
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = a / scale
    return out.clamp(0, 1) if mode == "percentile" else out


def normalise_signed(maps: Tensor, mode: str = "percentile", percentile: float = 99.0) -> Tensor:
    """The "signed" map ``[B, H, W]``: ``m`` scaled by ``|percentile of m|`` and clipped to [-1, 1], or
    by ``max |m|`` (``mode="max"``). A zero scale leaves the map unscaled."""
    if mode == "percentile":
        scale = _percentile(maps, percentile).abs()
    else:
        scale = maps.abs().flatten(1).amax(1)[:, None, None]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = maps / scale
    return out.clamp(-1, 1) if mode == "percentile" else out


def minmax(maps: Tensor) -> Tensor:
    """Each map ``[B, H, W]`` min–max scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    lo = flat.amin(1)[:, None, None]
    span = flat.amax(1)[:, None, None] - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-30), torch.zeros_like(maps))


def ssim(
    a: Tensor,
    b: Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    sample_covariance: bool = True,
) -> Tensor:
    """SSIM ``[B]`` of maps ``a``, ``b`` ``[B, H, W]`` by ``skimage.metrics.structural_similarity``
    (Gaussian weights of ``sigma``), computed in numpy one image at a time; NaN where both are constant."""
    from skimage.metrics import structural_similarity

    an, bn = a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()
    out = [
        structural_similarity(
            x,
            y,
            data_range=data_range,
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=sample_covariance,
        )
        if (np.ptp(x) > 0 or np.ptp(y) > 0)
        else float("nan")
        for x, y in zip(an, bn)
    ]
    return torch.tensor(out, dtype=torch.float64, device=a.device)


def hog_features(
    maps: Tensor, cell: int = 16, orientations: int = 9, block: int = 3, block_norm: str = "L2-Hys"
) -> Tensor:
    """HOG feature vectors ``[B, F]`` of maps ``[B, H, W]`` by ``skimage.feature.hog`` (numpy, per image)."""
    from skimage.feature import hog

    h, w = maps.shape[-2:]
    if h // cell < block or w // cell < block:
        raise ConfigError(
            f"hog_cell={cell} and hog_block={block} need maps of at least {cell * block} px per side; "
            f"got {h}x{w}. Lower hog_cell or hog_block for small images."
        )
    arr = maps.detach().double().cpu().numpy()
    feats = [
        hog(
            m,
            orientations=orientations,
            pixels_per_cell=(cell, cell),
            cells_per_block=(block, block),
            block_norm=block_norm,
            feature_vector=True,
        )
        for m in arr
    ]
    return torch.from_numpy(np.stack(feats)).to(maps.device)


class MapComparison(Metric):
    """Shared keys of the checks that compare an original map with a map after randomisation.

    Args:
        similarities: any of ``spearman_abs`` (Spearman of the "abs" maps), ``spearman_signed``
            (of the "signed" maps), ``ssim`` and ``hog`` (correlation of HOG features); each is one
            score key and one curve.
        target: the class explained: ``label``, ``original_prediction`` (the unmodified model's
            top-1) or ``current_prediction`` (each model's own top-1; Adebayo's reference).
        normalise: ``percentile`` (``|m|`` / its percentile clipped to [0, 1]; signed ``m`` /
            ``|percentile|`` clipped to [-1, 1]; the reference) or ``max`` (by ``max |m|``, Quantus).
        percentile: the percentile of ``normalise="percentile"`` (99 in the reference).
        structure_input: the map SSIM and HOG see, min–max scaled to [0, 1]: ``abs`` or ``signed``.
        ssim_data_range: SSIM's ``data_range`` (the reference's implicit value was 2; 1 fits [0, 1]).
        ssim_sigma: width of SSIM's Gaussian window.
        ssim_sample_covariance: skimage's ``use_sample_covariance`` (True: skimage's default, which
            the reference inherited; False: Wang et al.'s paper).
        hog_cell: HOG pixels per cell (16 in the reference).
        hog_orientations: HOG orientation bins.
        hog_block: HOG cells per block side.
        hog_block_norm: ``L1 | L1-sqrt | L2 | L2-Hys``.
        hog_correlation: ``spearman`` (the reference code) or ``pearson`` (the paper's text).
    """

    category = Category.SANITY
    stability = Stability.RANKING  # ranks of the map's values, HOG's orientation bins
    higher_is_better = False
    score_range = (-1.0, 1.0)  # rank correlations, SSIM and HOG correlation
    #: Comparison keys whose default differs for a subclass (Quantus' settings, say).
    comparison_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        similarities: Sequence[str] = SIMILARITIES,
        target: str = "current_prediction",
        normalise: str = "percentile",
        percentile: float = 99.0,
        structure_input: str = "abs",
        ssim_data_range: float = 1.0,
        ssim_sigma: float = 1.5,
        ssim_sample_covariance: bool = True,
        hog_cell: int = 16,
        hog_orientations: int = 9,
        hog_block: int = 3,
        hog_block_norm: str = "L2-Hys",
        hog_correlation: str = "spearman",
    ) -> None:
        sims = [similarities] if isinstance(similarities, str) else [str(s) for s in similarities]
        if not sims:
            raise ConfigError(f"similarities is empty; accepted: any of {', '.join(SIMILARITIES)}.")
        for s in sims:
            check_choice("similarities", s, SIMILARITIES)
        self.similarities = tuple(dict.fromkeys(sims))
        self.target = check_choice("target", target, TARGETS)
        self.normalise = check_choice("normalise", normalise, NORMALISATIONS)
        self.percentile = check_number("percentile", percentile, above=0, maximum=100)
        self.structure_input = check_choice("structure_input", structure_input, STRUCTURE_INPUTS)
        self.ssim_data_range = check_number("ssim_data_range", ssim_data_range, above=0)
        self.ssim_sigma = check_number("ssim_sigma", ssim_sigma, above=0)
        self.ssim_sample_covariance = check_bool("ssim_sample_covariance", ssim_sample_covariance)
        self.hog_cell = check_int("hog_cell", hog_cell, minimum=1)
        self.hog_orientations = check_int("hog_orientations", hog_orientations, minimum=1)
        self.hog_block = check_int("hog_block", hog_block, minimum=1)
        self.hog_block_norm = check_choice("hog_block_norm", hog_block_norm, HOG_BLOCK_NORMS)
        self.hog_correlation = check_choice("hog_correlation", hog_correlation, CORRELATIONS)

    def directions(self) -> dict[str, Direction]:
        """One score per chosen similarity, each lower-is-better (the map should change)."""
        return {s: Direction.LOWER for s in self.similarities}

    # -- the comparison ------------------------------------------------------------------
    def prepare(self, maps: Tensor) -> dict[str, Tensor]:
        """The forms of ``maps`` ``[B, H, W]`` each chosen similarity compares."""
        maps = maps.detach().float()
        out: dict[str, Tensor] = {}
        if "spearman_abs" in self.similarities:
            out["spearman_abs"] = normalise_abs(maps, self.normalise, self.percentile)
        if "spearman_signed" in self.similarities:
            out["spearman_signed"] = normalise_signed(maps, self.normalise, self.percentile)
        if "ssim" in self.similarities or "hog" in self.similarities:
            base = (normalise_abs if self.structure_input == "abs" else normalise_signed)(
                maps, self.normalise, self.percentile
            )
            structure = minmax(base)
            if "ssim" in self.similarities:
                out["ssim"] = structure
            if "hog" in self.similarities:
                out["hog"] = hog_features(
                    structure,
                    self.hog_cell,
                    self.hog_orientations,
                    self.hog_block,
                    self.hog_block_norm,
                )
        return out

    def compare(self, ref: dict[str, Tensor], other: dict[str, Tensor]) -> dict[str, Tensor]:
        """Similarity ``[B]`` (float64) per chosen similarity of two :meth:`prepare` outputs."""
        out: dict[str, Tensor] = {}
        for s in self.similarities:
            if s in ("spearman_abs", "spearman_signed"):
                out[s] = spearman(ref[s], other[s])
            elif s == "ssim":
                out[s] = ssim(
                    ref[s],
                    other[s],
                    self.ssim_data_range,
                    self.ssim_sigma,
                    self.ssim_sample_covariance,
                )
            else:
                corr = spearman if self.hog_correlation == "spearman" else pearson
                out[s] = corr(ref[s], other[s])
        return out

    def similarity(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        """Each chosen similarity ``[B]`` of maps ``a`` and ``b`` ``[B, H, W]``."""
        return self.compare(self.prepare(a), self.prepare(b))

    # -- shared plumbing -----------------------------------------------------------------
    @staticmethod
    def _method(ctx: Context) -> Explain:
        if ctx.method is None:
            raise ConfigError(
                "sanity checks re-run the attribution method, but the context has none."
            )
        return ctx.method

    @staticmethod
    def _predict(ctx: Context, model: nn.Module, images: Tensor) -> Tensor:
        """Top-1 of ``model`` (with the run's precision and chunking; counted in ``ctx``)."""
        if model is ctx.model:
            return ctx.predictions(images)
        # the same stopwatch and counters; a copy's forwards are not compiled (one compile per
        # randomised model would cost more than it saves)
        sub = dataclasses.replace(ctx, model=model, forward_images=0, compile=False)
        pred = sub.predictions(images)
        ctx.forward_images += sub.forward_images
        return pred

    def _targets(
        self, ctx: Context, batch: Batch, model: nn.Module, original: Tensor | None
    ) -> Tensor:
        if self.target == "label":
            return batch.targets
        if self.target == "original_prediction" and original is not None:
            return original
        return self._predict(ctx, model, batch.images)

    def explain(self, ctx: Context, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """The map ``[B, H, W]`` this check compares (the run's method; SmoothMPRT averages it)."""
        return self._method(ctx)(model, images, targets)
