"""Sanity checks: does the map change when the model's parameters or training labels are randomised?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018 (reference code
adebayoj/sanity_checks_saliency), and the refinements in Quantus (Hedström et al. 2023: efficient
and smooth MPRT) plus Sixt et al.'s random-logit test. PROTOCOLS.md §5 and §6 list the protocol
and every convention the references disagree on; each is a constructor key here.

Shared conventions (one place, used by every class below):

* Randomise a layer = call its own ``reset_parameters()`` after ``torch.manual_seed(seed)`` inside
  ``torch.random.fork_rng`` (the caller's RNG state is restored). The same seed is used before every
  layer (as Quantus does with ``seed + 1``), so a layer's random weights depend only on the seed and
  the layer, not on the order or on cascading vs independent. Buffers (batch-norm running
  statistics) are kept as trained unless ``batchnorm="all"``.
* The original model is never modified: every randomised model is a deep copy.
* Spearman and Pearson correlations are batched on the device (average ranks for ties, like
  ``scipy.stats.spearmanr``); SSIM and HOG are scikit-image, numpy, one image at a time, one pass
  per randomisation step.
* A similarity is NaN where a map is constant (no ranks, no structure); that image's score is
  flagged ``degenerate``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bench.context import Context
from bench.data.base import Batch
from bench.errors import ConfigError, choice_error
from bench.models import read_checkpoint
from methods.base import get_layer
from metrics.base import Metric, MetricOutput

SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim", "hog")
TARGETS = ("label", "original_prediction", "current_prediction")
ORDERS = ("cascading", "independent")
DIRECTIONS = ("top_down", "bottom_up")
NORMALISATIONS = ("percentile", "max")
STRUCTURE_INPUTS = ("abs", "signed")
BATCHNORM = ("affine", "all", "skip")
HOG_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
CORRELATIONS = ("spearman", "pearson")

ADEBAYO = "Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. Sanity Checks for Saliency Maps. NeurIPS 2018."
HEDSTROM = (
    "Hedström, Weber, Krakowczyk, Bareeva, Motzkus, Samek, Lapuschkin, Höhne. Sanity Checks "
    "Revisited: An Exploration to Repair the Model Parameter Randomisation Test. XAI in Action "
    "workshop, NeurIPS 2023."
)
SIXT = "Sixt, Granz, Landgraf. When Explanations Lie: Why Many Modified BP Attributions Fail. ICML 2020."

Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _check(key: str, value: object, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise choice_error(key, value, accepted)


# ----------------------------------------------------------------------------- similarities


def rank(x: Tensor) -> Tensor:
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
    out = pearson(rank(a), rank(b))
    bad = a.isnan().any(1) | b.isnan().any(1)
    return torch.where(bad, torch.full_like(out, float("nan")), out)


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
        raise ValueError(
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


# ----------------------------------------------------------------------------- randomisation


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def _resettable(module: nn.Module, batchnorm: str) -> bool:
    if not callable(getattr(module, "reset_parameters", None)):
        return False
    if _is_norm(module) and batchnorm == "skip":
        return False
    own = any(True for _ in module.parameters(recurse=False))
    if batchnorm == "all" and _is_norm(module):
        own = own or any(True for _ in module.buffers(recurse=False))
    return own


def randomisation_layers(
    model: nn.Module,
    layers: str | Sequence[str] = "auto",
    batchnorm: str = "affine",
    direction: str = "top_down",
) -> list[str]:
    """Names of the randomisation steps of ``model``, in randomisation order.

    ``layers="auto"``: every module with its own parameters and a ``reset_parameters()`` (conv,
    linear, and normalisation layers' affine parameters unless ``batchnorm="skip"``), one step each,
    as Quantus does; a list: those modules (a container resets all its resettable submodules in one
    step, e.g. a block). ``top_down`` starts at the logits (reverse of ``named_modules()`` order).
    """
    if isinstance(layers, str):
        if layers != "auto":
            raise ConfigError(
                f"layers={layers} is not valid; accepted: auto or a list of module names."
            )
        names = [n for n, m in model.named_modules() if n and _resettable(m, batchnorm)]
    else:
        names = [str(n) for n in layers]
        for n in names:
            module = get_layer(model, n)
            if not any(_resettable(m, batchnorm) for m in module.modules()):
                raise ConfigError(
                    f"layers: {n} has no parameters to randomise (batchnorm={batchnorm})."
                )
        order = {n: i for i, (n, _) in enumerate(model.named_modules())}
        names.sort(key=order.__getitem__)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no layer with parameters to randomise.")
    return names[::-1] if direction == "top_down" else names


def _rng_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def randomise_layer(model: nn.Module, name: str, seed: int, batchnorm: str = "affine") -> None:
    """Re-initialise module ``name`` of ``model`` in place with its own ``reset_parameters()``.

    ``torch.manual_seed(seed)`` precedes each reset, inside ``fork_rng`` so the caller's RNG state is
    restored. Buffers (running statistics) are restored unless ``batchnorm="all"``.
    """
    module = model.get_submodule(name) if name else model
    with torch.random.fork_rng(devices=_rng_devices(model)):
        for m in module.modules():
            if not _resettable(m, batchnorm):
                continue
            keep = (
                {}
                if batchnorm == "all"
                else {k: b.detach().clone() for k, b in m.named_buffers(recurse=False)}
            )
            torch.manual_seed(seed)
            with torch.no_grad():
                m.reset_parameters()
                for k, b in keep.items():
                    getattr(m, k).copy_(b)


def randomised_models(
    model: nn.Module,
    names: Sequence[str],
    seed: int,
    order: str = "cascading",
    batchnorm: str = "affine",
) -> Iterator[nn.Module]:
    """Deep copies of ``model``: cascading adds one randomised layer of ``names`` per step;
    independent randomises only that step's layer. ``model`` itself is never modified."""
    current: nn.Module | None = None
    for name in names:
        if order == "independent" or current is None:
            current = copy.deepcopy(model)
        randomise_layer(current, name, seed, batchnorm)
        yield current


# ----------------------------------------------------------------------------- metrics


class _MapComparison(Metric):
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

    category = "sanity"
    higher_is_better = False

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
            _check("similarities", s, SIMILARITIES)
        _check("target", target, TARGETS)
        _check("normalise", normalise, NORMALISATIONS)
        _check("structure_input", structure_input, STRUCTURE_INPUTS)
        _check("hog_block_norm", hog_block_norm, HOG_BLOCK_NORMS)
        _check("hog_correlation", hog_correlation, CORRELATIONS)
        if not 0 < percentile <= 100:
            raise ConfigError(
                f"percentile={percentile} is not valid; accepted: 0 < percentile <= 100."
            )
        if ssim_data_range <= 0:
            raise ConfigError(f"ssim_data_range={ssim_data_range} is not valid; accepted: > 0.")
        self.similarities = tuple(dict.fromkeys(sims))
        self.target = target
        self.normalise = normalise
        self.percentile = float(percentile)
        self.structure_input = structure_input
        self.ssim_data_range = float(ssim_data_range)
        self.ssim_sigma = float(ssim_sigma)
        self.ssim_sample_covariance = bool(ssim_sample_covariance)
        self.hog_cell = int(hog_cell)
        self.hog_orientations = int(hog_orientations)
        self.hog_block = int(hog_block)
        self.hog_block_norm = hog_block_norm
        self.hog_correlation = hog_correlation

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
        sub = dataclasses.replace(ctx, model=model, forward_images=0, forward_seconds=0.0)
        pred = sub.predictions(images)
        ctx.forward_images += sub.forward_images
        ctx.forward_seconds += sub.forward_seconds
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


class ModelRandomisation(_MapComparison):
    """Model-parameter randomisation test (Adebayo et al. 2018): similarity of the map to the map of
    the same method on a model whose layers are re-initialised, one step per layer.

    Per image, each similarity gives a curve ``[B, L]`` over the randomisation steps (in the order
    of ``direction``) and a score = the mean over the steps (NaN steps left out and flagged).
    Lower = the map depends more on the learnt parameters (better). The original map is recomputed
    with this check's target rule on the unmodified model (``maps`` is only shape-checked), so the
    check does not depend on the run's ``explain`` key. Cost: ``L + 1`` method calls per batch.

    Args:
        order: ``cascading`` (from the first layer of ``direction``, one more layer each step) or
            ``independent`` (the trained model with only that step's layer randomised).
        direction: ``top_down`` (logits first; the paper) or ``bottom_up``.
        layers: ``auto`` or a list of module names (see :func:`randomisation_layers`).
        batchnorm: ``affine`` (norm layers' weight/bias re-initialised, running statistics kept as
            trained; PROTOCOLS.md), ``all`` (their ``reset_parameters()`` also resets the running
            statistics; Quantus), ``skip`` (norm layers are not randomised).
        seed_offset: the resets use ``torch.manual_seed(ctx.seed + seed_offset)`` (Quantus uses its
            ``seed + 1``).
        **kwargs: the comparison keys of :class:`_MapComparison`.
    """

    citation = ADEBAYO

    def __init__(
        self,
        order: str = "cascading",
        direction: str = "top_down",
        layers: str | Sequence[str] = "auto",
        batchnorm: str = "affine",
        seed_offset: int = 1,
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
        super().__init__(
            similarities,
            target,
            normalise,
            percentile,
            structure_input,
            ssim_data_range,
            ssim_sigma,
            ssim_sample_covariance,
            hog_cell,
            hog_orientations,
            hog_block,
            hog_block_norm,
            hog_correlation,
        )
        _check("order", order, ORDERS)
        _check("direction", direction, DIRECTIONS)
        _check("batchnorm", batchnorm, BATCHNORM)
        if not isinstance(layers, str):
            layers = [str(n) for n in layers]
        self.order = order
        self.direction = direction
        self.layers = layers
        self.batchnorm = batchnorm
        self.seed_offset = int(seed_offset)

    def layer_names(self, model: nn.Module) -> list[str]:
        """The curve's x-axis: the layer randomised at each step."""
        return randomisation_layers(model, self.layers, self.batchnorm, self.direction)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        names = self.layer_names(ctx.model)
        images = batch.images
        original_pred = ctx.predictions(images) if self.target != "label" else None
        t0 = batch.targets if self.target == "label" else original_pred
        ref = self.prepare(self.explain(ctx, ctx.model, images, t0))
        steps: dict[str, list[Tensor]] = {s: [] for s in self.similarities}
        for model in randomised_models(
            ctx.model, names, ctx.seed + self.seed_offset, self.order, self.batchnorm
        ):
            targets = self._targets(ctx, batch, model, original_pred)
            sims = self.compare(ref, self.prepare(self.explain(ctx, model, images, targets)))
            for s, v in sims.items():
                steps[s].append(v)
        curves = {s: torch.stack(v, 1).float() for s, v in steps.items()}
        scores = {s: c.nanmean(1) for s, c in curves.items()}
        flags = {s: c.isnan().any(1) for s, c in curves.items()}
        return MetricOutput(scores=scores, curves=curves, flags=flags)


class SmoothMPRT(ModelRandomisation):
    """Smooth MPRT (Hedström et al. 2023; Quantus ``SmoothMPRT``): model-parameter randomisation
    where every map (original and randomised) is the mean over ``noise_samples`` inputs, all but the
    last with Gaussian noise of std ``noise_magnitude * (max - min)`` of the image (the last is the
    clean image, as in Quantus). The noise is drawn from ``ctx.generator(noise_offset)`` and the same
    noise is used for every model state (Quantus draws fresh unseeded numpy noise per state).
    Scores and curves as :class:`ModelRandomisation`; lower is better. Noisy copies go through the
    method in chunks of ``ctx.chunk_size`` images.

    Args:
        noise_samples: maps averaged per image (50 in the paper's ImageNet setting).
        noise_magnitude: noise std as a fraction of each image's value range.
        noise_offset: the generator offset of the noise.
        (other keys as :class:`ModelRandomisation`; defaults follow Quantus: bottom-up cascading,
        fixed labels, Spearman of ``|m| / max |m|``.)
    """

    citation = HEDSTROM

    def __init__(
        self,
        noise_samples: int = 50,
        noise_magnitude: float = 0.1,
        noise_offset: int = 2,
        order: str = "cascading",
        direction: str = "bottom_up",
        layers: str | Sequence[str] = "auto",
        batchnorm: str = "affine",
        seed_offset: int = 1,
        similarities: Sequence[str] = ("spearman_abs",),
        target: str = "label",
        normalise: str = "max",
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
        super().__init__(
            order,
            direction,
            layers,
            batchnorm,
            seed_offset,
            similarities,
            target,
            normalise,
            percentile,
            structure_input,
            ssim_data_range,
            ssim_sigma,
            ssim_sample_covariance,
            hog_cell,
            hog_orientations,
            hog_block,
            hog_block_norm,
            hog_correlation,
        )
        if noise_samples < 1:
            raise ConfigError(
                f"noise_samples={noise_samples} is not valid; accepted: an integer >= 1."
            )
        if noise_magnitude < 0:
            raise ConfigError(f"noise_magnitude={noise_magnitude} is not valid; accepted: >= 0.")
        self.noise_samples = int(noise_samples)
        self.noise_magnitude = float(noise_magnitude)
        self.noise_offset = int(noise_offset)

    def noise(self, ctx: Context, images: Tensor) -> Iterator[Tensor]:
        """The ``noise_samples - 1`` standard-normal draws ``[B, 3, H, W]``, in order (then none)."""
        gen = ctx.generator(self.noise_offset)
        for _ in range(self.noise_samples - 1):
            yield torch.randn(images.shape, generator=gen, device=images.device, dtype=images.dtype)

    def explain(self, ctx: Context, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        method = self._method(ctx)
        b = images.shape[0]
        span = images.flatten(1).amax(1) - images.flatten(1).amin(1)
        std = (self.noise_magnitude * span)[:, None, None, None]
        per_call = max(1, ctx.chunk_size // max(b, 1))
        total = torch.zeros(images.shape[0], *images.shape[-2:], device=images.device)
        pending: list[Tensor] = []

        def flush() -> None:
            nonlocal total
            x = torch.cat(pending)
            out = method(model, x, targets.repeat(len(pending)))
            total = total + out.view(len(pending), b, *out.shape[-2:]).sum(0)
            pending.clear()

        for eps in self.noise(ctx, images):
            pending.append(images + eps * std)
            if len(pending) == per_call:
                flush()
        pending.append(images)
        flush()
        return total / self.noise_samples


class EfficientMPRT(Metric):
    """Efficient MPRT (Hedström et al. 2023; Quantus ``EfficientMPRT``): the relative rise in the
    map's complexity from the trained to the fully randomised model,
    ``(H(m_rand) - H(m_orig)) / H(m_orig)`` with ``H`` the Shannon entropy (natural log) of a
    ``n_bins``-bin histogram of the raw map (``np.histogram``'s equal-width bins over the map's
    range, reproduced exactly on the device). Higher is better. The fully randomised model
    re-initialises every layer of :func:`randomisation_layers` (with the same seed before each, the
    order does not matter). Flagged where either map is constant (entropy 0: NaN for the original,
    -1 for the randomised one, e.g. Grad-CAM's ReLU zeroing a random model's map). Score keys:
    ``""`` plus ``entropy_original`` and ``entropy_randomised``.

    Args:
        target: ``label`` (Quantus), ``original_prediction`` or ``current_prediction``.
        n_bins: histogram bins (Quantus' default 100).
        layers: ``auto`` or a list of module names.
        batchnorm: ``affine | all | skip`` (see :class:`ModelRandomisation`).
        seed_offset: the resets use ``torch.manual_seed(ctx.seed + seed_offset)``.
    """

    higher_is_better = True
    category = "sanity"
    citation = HEDSTROM

    def __init__(
        self,
        target: str = "label",
        n_bins: int = 100,
        layers: str | Sequence[str] = "auto",
        batchnorm: str = "affine",
        seed_offset: int = 1,
    ) -> None:
        _check("target", target, TARGETS)
        _check("batchnorm", batchnorm, BATCHNORM)
        if n_bins < 1:
            raise ConfigError(f"n_bins={n_bins} is not valid; accepted: an integer >= 1.")
        self.target = target
        self.n_bins = int(n_bins)
        self.layers = layers if isinstance(layers, str) else [str(n) for n in layers]
        self.batchnorm = batchnorm
        self.seed_offset = int(seed_offset)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        method = _MapComparison._method(ctx)
        images = batch.images
        names = randomisation_layers(ctx.model, self.layers, self.batchnorm, "bottom_up")
        *_, rand = randomised_models(
            ctx.model, names, ctx.seed + self.seed_offset, "cascading", self.batchnorm
        )
        pred = ctx.predictions(images) if self.target != "label" else None
        t0 = batch.targets if self.target == "label" else pred
        if self.target == "current_prediction":
            t1 = _MapComparison._predict(ctx, rand, images)
        else:
            t1 = t0
        h0 = histogram_entropy(method(ctx.model, images, t0), self.n_bins)
        h1 = histogram_entropy(method(rand, images, t1), self.n_bins)
        score = torch.where(
            h0 > 0, (h1 - h0) / h0.clamp_min(1e-300), torch.full_like(h0, float("nan"))
        )
        return MetricOutput(
            scores={"": score, "entropy_original": h0, "entropy_randomised": h1},
            flags={"": ~(h0 > 0) | ~(h1 > 0)},
        )


def histogram_entropy(maps: Tensor, n_bins: int = 100) -> Tensor:
    """Entropy ``[B]`` (float64, nats) of the ``n_bins`` equal-width histogram of each map ``[B, ...]``.

    Reproduces ``scipy.stats.entropy(np.histogram(m, bins=n_bins)[0])`` bit for bit in the map's
    dtype: numpy's bin index rule, its edge corrections, and its ±0.5 range for a constant map.
    """
    x = maps.detach().flatten(1)
    b = x.shape[0]
    lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
    same = lo == hi
    lo = torch.where(same, lo - 0.5, lo)
    hi = torch.where(same, hi + 0.5, hi)
    idx = (((x - lo) / (hi - lo)) * n_bins).long()
    idx = torch.where(idx == n_bins, idx - 1, idx)
    # np.linspace(lo, hi, n_bins + 1) in the map's dtype: arange * step + lo; the last edge = hi.
    step = (hi - lo) / n_bins
    edges = torch.arange(n_bins + 1, device=x.device, dtype=x.dtype) * step + lo
    edges[:, -1:] = hi
    idx = torch.where(x < edges.gather(1, idx), idx - 1, idx)
    inc = (x >= edges.gather(1, (idx + 1).clamp_max(n_bins))) & (idx != n_bins - 1)
    idx = torch.where(inc, idx + 1, idx)
    counts = torch.zeros(b, n_bins, dtype=torch.float64, device=x.device)
    counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    p = counts / counts.sum(1, keepdim=True)
    return -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(1)


class DataRandomisation(_MapComparison):
    """Data randomisation test (Adebayo et al. 2018): similarity of the map to the same method's map
    on a copy of the model trained on permuted labels (``scripts/train_shapes.py --shuffle-labels``).

    One score per similarity; lower = the map depends more on what the model learnt from the labels
    (better). The checkpoint is read once, at construction; each batch loads it into a deep copy of
    ``ctx.model`` (same architecture). The original map is recomputed with this check's target rule;
    ``current_prediction`` = each model's own top-1.

    Args:
        checkpoint: the permuted-label model's checkpoint (relative to the project root or absolute).
        **kwargs: the comparison keys of :class:`_MapComparison`.
    """

    citation = ADEBAYO

    def __init__(
        self,
        checkpoint: str,
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
        super().__init__(
            similarities,
            target,
            normalise,
            percentile,
            structure_input,
            ssim_data_range,
            ssim_sigma,
            ssim_sample_covariance,
            hog_cell,
            hog_orientations,
            hog_block,
            hog_block_norm,
            hog_correlation,
        )
        self.checkpoint = str(checkpoint)
        ckpt = read_checkpoint(
            checkpoint, hint="Make it with `python scripts/train_shapes.py --shuffle-labels`."
        )
        self._state = ckpt.get("state_dict", ckpt)

    def randomised_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the permuted-label weights, in eval mode."""
        other = copy.deepcopy(model)
        try:
            other.load_state_dict(self._state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise ConfigError(
                f"checkpoint={self.checkpoint} does not fit {type(model).__name__}: {first}"
            ) from err
        return other.eval()

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        other = self.randomised_model(ctx.model)
        original_pred = ctx.predictions(batch.images) if self.target != "label" else None
        t0 = batch.targets if self.target == "label" else original_pred
        ref = self.prepare(self.explain(ctx, ctx.model, batch.images, t0))
        t1 = self._targets(ctx, batch, other, original_pred)
        scores = self.compare(ref, self.prepare(self.explain(ctx, other, batch.images, t1)))
        scores = {s: v.float() for s, v in scores.items()}
        return MetricOutput(scores=scores, flags={s: v.isnan() for s, v in scores.items()})


class RandomLogit(_MapComparison):
    """Random-logit test (Sixt et al. 2020; Quantus ``RandomLogit``): similarity of the map for the
    explained class to the map for a uniformly drawn other class (from ``ctx.generator(seed_offset)``).

    One score per similarity; lower = the map is class-specific (better).

    Args:
        target: the explained class: ``label`` or ``original_prediction`` (``current_prediction`` is
            the same as ``original_prediction`` here: the model is not changed).
        seed_offset: generator offset of the random classes.
        **kwargs: the comparison keys of :class:`_MapComparison` (Quantus' default similarity is
            SSIM on the row-major flattened map; see tests/metrics/test_quantus_sanity.py).
    """

    citation = SIXT

    def __init__(
        self,
        seed_offset: int = 3,
        similarities: Sequence[str] = SIMILARITIES,
        target: str = "label",
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
        super().__init__(
            similarities,
            target,
            normalise,
            percentile,
            structure_input,
            ssim_data_range,
            ssim_sigma,
            ssim_sample_covariance,
            hog_cell,
            hog_orientations,
            hog_block,
            hog_block_norm,
            hog_correlation,
        )
        self.seed_offset = int(seed_offset)

    def other_classes(self, ctx: Context, targets: Tensor, num_classes: int) -> Tensor:
        """A class ``[B]`` drawn uniformly from the ``num_classes - 1`` classes other than ``targets``."""
        if num_classes < 2:
            raise ValueError(
                f"the random-logit test needs at least 2 classes; the model has {num_classes}."
            )
        gen = ctx.generator(self.seed_offset)
        shift = torch.randint(1, num_classes, targets.shape, generator=gen, device=targets.device)
        return (targets + shift) % num_classes

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        logits = ctx.forward(batch.images)
        targets = batch.targets if self.target == "label" else logits.argmax(1)
        other = self.other_classes(ctx, targets, logits.shape[1])
        scores = self.similarity(
            self.explain(ctx, ctx.model, batch.images, targets),
            self.explain(ctx, ctx.model, batch.images, other),
        )
        scores = {s: v.float() for s, v in scores.items()}
        return MetricOutput(scores=scores, flags={s: v.isnan() for s, v in scores.items()})
