"""Randomisation sanity checks: does the map change when the model's parameters, its training labels
or the explained class are randomised?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018 (reference code
adebayoj/sanity_checks_saliency), and the refinements in Quantus (Hedström et al. 2023: efficient
and smooth MPRT) plus Sixt et al.'s random-logit test. docs/PROTOCOLS.md §5 and §6 list the
protocol and every convention the references disagree on; each is a constructor key here (the
map-comparison keys of :class:`bench.metrics.similarity.MapComparison` included).

Shared conventions (one place, used by every class below):

* Randomise a layer = call its own ``reset_parameters()`` after ``torch.manual_seed(seed)`` inside
  ``torch.random.fork_rng`` (the caller's RNG state is restored). The same seed is used before every
  layer (as Quantus does with ``seed + 1``), so a layer's random weights depend only on the seed and
  the layer, not on the order or on cascading vs independent. Buffers (batch-norm running
  statistics) are kept as trained unless ``batchnorm="all"``.
* The original model is never modified: every randomised model is a deep copy.
* A score is the mean similarity over the randomisation steps; the per-step curve is stored and
  the randomised layers are its x axis (``curve_x`` in the run record).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.core.batch import Batch
from bench.core.checkpoints import load_state, read_checkpoint, split_checkpoint
from bench.core.context import Context
from bench.core.errors import ConfigError, check_choice, check_int, check_number
from bench.core.layers import get_layer
from bench.core.rng import content_keys, hash_uniform, keyed_normal
from bench.metrics.base import Category, Direction, Metric, MetricOutput, Stability
from bench.metrics.similarity import TARGETS, MapComparison

ORDERS = ("cascading", "independent")
DIRECTIONS = ("top_down", "bottom_up")
BATCHNORM = ("affine", "all", "skip")

ADEBAYO = "Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. Sanity Checks for Saliency Maps. NeurIPS 2018."
HEDSTROM = (
    "Hedström, Weber, Krakowczyk, Bareeva, Motzkus, Samek, Lapuschkin, Höhne. Sanity Checks "
    "Revisited: An Exploration to Repair the Model Parameter Randomisation Test. XAI in Action "
    "workshop, NeurIPS 2023."
)
SIXT = "Sixt, Granz, Landgraf. When Explanations Lie: Why Many Modified BP Attributions Fail. ICML 2020."


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


class ModelRandomisation(MapComparison):
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
            trained; docs/PROTOCOLS.md §5), ``all`` (their ``reset_parameters()`` also resets the running
            statistics; Quantus), ``skip`` (norm layers are not randomised).
        seed_offset: the resets use ``torch.manual_seed(ctx.seed + seed_offset)`` (Quantus uses its
            ``seed + 1``).
        **kwargs: the comparison keys of :class:`bench.metrics.similarity.MapComparison`.
    """

    citation = ADEBAYO

    def __init__(
        self,
        order: str = "cascading",
        direction: str = "top_down",
        layers: str | Sequence[str] = "auto",
        batchnorm: str = "affine",
        seed_offset: int = 1,
        **comparison: Any,
    ) -> None:
        super().__init__(**{**self.comparison_defaults, **comparison})
        self.order = check_choice("order", order, ORDERS)
        self.direction = check_choice("direction", direction, DIRECTIONS)
        self.layers = layers if isinstance(layers, str) else [str(n) for n in layers]
        self.batchnorm = check_choice("batchnorm", batchnorm, BATCHNORM)
        self.seed_offset = check_int("seed_offset", seed_offset)

    def curve_labels(self, model: nn.Module) -> list[str]:
        """The curve's x-axis: the layer randomised at each step."""
        return randomisation_layers(model, self.layers, self.batchnorm, self.direction)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        names = self.curve_labels(ctx.model)
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
    clean image, as in Quantus). The noise is keyed by ``(seed + noise_offset, image content, draw)``
    (:mod:`bench.core.rng`; independent of the batch the image is in) and the same
    noise is used for every model state (Quantus draws fresh unseeded numpy noise per state).
    Scores and curves as :class:`ModelRandomisation`; lower is better. Noisy copies go through the
    method in chunks of ``ctx.chunk_size`` images.

    Args:
        noise_samples: maps averaged per image (50 in the paper's ImageNet setting).
        noise_magnitude: noise std as a fraction of each image's value range.
        noise_offset: the generator offset of the noise.
        direction: ``bottom_up`` (Quantus) or ``top_down``.
        **keys: the other keys of :class:`ModelRandomisation` and of
            :class:`bench.metrics.similarity.MapComparison`; defaults follow Quantus: cascading, fixed
            labels, Spearman of ``|m| / max |m|``.
    """

    citation = HEDSTROM
    comparison_defaults: ClassVar[dict[str, Any]] = {
        "similarities": ("spearman_abs",),
        "target": "label",
        "normalise": "max",
    }

    def __init__(
        self,
        noise_samples: int = 50,
        noise_magnitude: float = 0.1,
        noise_offset: int = 2,
        direction: str = "bottom_up",
        **keys: Any,
    ) -> None:
        super().__init__(direction=direction, **keys)
        self.noise_samples = check_int("noise_samples", noise_samples, minimum=1)
        self.noise_magnitude = check_number("noise_magnitude", noise_magnitude, minimum=0)
        self.noise_offset = check_int("noise_offset", noise_offset)

    def noise(self, ctx: Context, images: Tensor) -> Iterator[Tensor]:
        """The ``noise_samples - 1`` standard-normal draws ``[B, 3, H, W]``, in order (then none)."""
        keys = content_keys(images, ctx.seed + self.noise_offset)
        for k in range(self.noise_samples - 1):
            sample = torch.full_like(keys, k)
            yield keyed_normal(keys, sample, images[0].numel()).view_as(images).to(images.dtype)

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
    score_range = (-1.0, None)  # (H_rand - H_orig) / H_orig with entropies >= 0
    category = Category.SANITY
    stability = Stability.RANKING  # the entropy's histogram bins
    citation = HEDSTROM
    suffixes = {"entropy_original": Direction.NONE, "entropy_randomised": Direction.NONE}
    key_ranges = {"entropy_original": (0.0, None), "entropy_randomised": (0.0, None)}

    def __init__(
        self,
        target: str = "label",
        n_bins: int = 100,
        layers: str | Sequence[str] = "auto",
        batchnorm: str = "affine",
        seed_offset: int = 1,
    ) -> None:
        self.target = check_choice("target", target, TARGETS)
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        self.layers = layers if isinstance(layers, str) else [str(n) for n in layers]
        self.batchnorm = check_choice("batchnorm", batchnorm, BATCHNORM)
        self.seed_offset = check_int("seed_offset", seed_offset)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        method = MapComparison._method(ctx)
        images = batch.images
        names = randomisation_layers(ctx.model, self.layers, self.batchnorm, "bottom_up")
        *_, rand = randomised_models(
            ctx.model, names, ctx.seed + self.seed_offset, "cascading", self.batchnorm
        )
        pred = ctx.predictions(images) if self.target != "label" else None
        t0 = batch.targets if self.target == "label" else pred
        if self.target == "current_prediction":
            t1 = MapComparison._predict(ctx, rand, images)
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


class DataRandomisation(MapComparison):
    """Data randomisation test (Adebayo et al. 2018): similarity of the map to the same method's map
    on a copy of the model trained on permuted labels (``scripts/train_shapes.py --shuffle-labels``).

    One score per similarity; lower = the map depends more on what the model learnt from the labels
    (better). The checkpoint is read once, at construction; each batch loads it into a deep copy of
    ``ctx.model`` (same architecture). The original map is recomputed with this check's target rule;
    ``current_prediction`` = each model's own top-1.

    Args:
        checkpoint: the permuted-label model's checkpoint (relative to the project root or absolute).
        **kwargs: the comparison keys of :class:`bench.metrics.similarity.MapComparison`.
    """

    citation = ADEBAYO

    def __init__(
        self,
        checkpoint: str,
        **comparison: Any,
    ) -> None:
        super().__init__(**{**self.comparison_defaults, **comparison})
        self.checkpoint = str(checkpoint)
        hint = "Make it with `python scripts/train_shapes.py --shuffle-labels`."
        state, _ = split_checkpoint(
            read_checkpoint(checkpoint, "checkpoint", hint), checkpoint, "checkpoint"
        )
        if isinstance(state, nn.Module):
            state = state.state_dict()
        self._state = state

    def randomised_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the permuted-label weights, in eval mode."""
        other = copy.deepcopy(model)
        load_state(other, self._state, self.checkpoint, type(model).__name__, key="checkpoint")
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


class RandomLogit(MapComparison):
    """Random-logit test (Sixt et al. 2020; Quantus ``RandomLogit``): similarity of the map for the
    explained class to the map for a uniformly drawn other class (keyed by ``(seed + seed_offset,
    image content)``, so independent of the batch).

    One score per similarity; lower = the map is class-specific (better).

    Args:
        target: the explained class: ``label`` or ``original_prediction`` (``current_prediction`` is
            the same as ``original_prediction`` here: the model is not changed).
        seed_offset: generator offset of the random classes.
        **kwargs: the comparison keys of :class:`bench.metrics.similarity.MapComparison` (Quantus' default similarity is
            SSIM on the row-major flattened map; see tests/metrics/test_quantus_sanity.py).
    """

    citation = SIXT
    comparison_defaults: ClassVar[dict[str, Any]] = {"target": "label"}

    def __init__(
        self,
        seed_offset: int = 3,
        **comparison: Any,
    ) -> None:
        super().__init__(**{**self.comparison_defaults, **comparison})
        self.seed_offset = check_int("seed_offset", seed_offset)

    def other_classes(
        self, ctx: Context, images: Tensor, targets: Tensor, num_classes: int
    ) -> Tensor:
        """A class ``[B]`` drawn uniformly from the ``num_classes - 1`` classes other than
        ``targets``, keyed by each image's content (the same whatever batch it is in)."""
        if num_classes < 2:
            raise ConfigError(
                f"the random-logit test needs at least 2 classes; the model has {num_classes}."
            )
        u = hash_uniform(
            content_keys(images, ctx.seed + self.seed_offset), torch.zeros_like(targets)
        )
        shift = 1 + (u.double() * (num_classes - 1)).long().clamp_max(num_classes - 2)
        return (targets + shift) % num_classes

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        logits = ctx.forward(batch.images)
        targets = batch.targets if self.target == "label" else logits.argmax(1)
        other = self.other_classes(ctx, batch.images, targets, logits.shape[1])
        scores = self.similarity(
            self.explain(ctx, ctx.model, batch.images, targets),
            self.explain(ctx, ctx.model, batch.images, other),
        )
        scores = {s: v.float() for s, v in scores.items()}
        return MetricOutput(scores=scores, flags={s: v.isnan() for s, v in scores.items()})
