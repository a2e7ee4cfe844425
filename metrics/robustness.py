"""Infidelity and max-sensitivity (Yeh et al., NeurIPS 2019), computed by ``captum.metrics``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.metrics import infidelity, sensitivity_max
from torch import Tensor

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import check_bool, check_choice, check_int, check_number
from bench.core.rng import content_keys, keyed_normal, keyed_uniform, sample_rows
from bench.metrics.base import Category, Metric, MetricOutput, Stability
from bench.metrics.faithfulness import SCORES, TARGETS, explained_targets

YEH = (
    "Yeh, Hsieh, Suggala, Inouye, Ravikumar. On the (In)fidelity and Sensitivity of Explanations. "
    "NeurIPS 2019."
)
NORMS = ("fro", "inf")

#: Seed offsets of the noise keys, so the two metrics never share a noise stream.
_INFIDELITY_STREAM = 101
_SENSITIVITY_STREAM = 102


def _per_batch(ctx: Context, batch_size: int, n_samples: int) -> int:
    """captum's ``max_examples_per_batch`` from the run's chunk size, within the range captum accepts."""
    return min(max(ctx.chunk_size, batch_size), batch_size * n_samples)


def _keyed_draws(
    images: Tensor, seed: int, keyed: Callable[[Tensor, Tensor, int], Tensor]
) -> Callable[[Tensor], Tensor]:
    """The perturbations of captum's successive calls for ``images`` ``[B, ...]``: a call's
    ``inputs`` (the batch repeated once per draw) get ``keyed`` draws (:func:`keyed_normal`,
    :func:`keyed_uniform`) keyed by ``(seed, image content, draw)``, numbered on from the last call's,
    shaped and typed like ``inputs`` (:mod:`bench.core.rng`: independent of the batch and chunks)."""
    keys = content_keys(images, seed)
    done = 0

    def draw(inputs: Tensor) -> Tensor:
        nonlocal done
        rk, sample = sample_rows(keys, inputs.shape[0], done)
        done += inputs.shape[0] // images.shape[0]
        return keyed(rk, sample, inputs[0].numel()).view_as(inputs).to(inputs.dtype)

    return draw


class _Yeh(Metric):
    """What Yeh et al.'s two metrics share: computed by ``captum.metrics`` over perturbations drawn
    per image (:func:`_keyed_draws`), a non-negative score, lower is better."""

    higher_is_better = False
    score_range = (0.0, None)  # a mean squared error, a norm ratio
    stability = Stability.ROUNDING  # a mean squared error, a maximum of norms
    citation = YEH


class Infidelity(_Yeh):
    """Infidelity (Yeh et al. 2019): E[(I · m - (f(x) - f(x - I)))²] over Gaussian perturbations I.

    ``I ~ N(0, noise_std²)`` i.i.d. per input element in normalised space, ``n_perturb_samples``
    draws per image, keyed by ``(seed, image content, draw)`` (:mod:`bench.core.rng`: an image's noise
    does not depend on its batch or the chunk size); the map ``[H, W]`` is the attribution of each
    pixel in every channel (``I · m = Σ_c Σ_p I_cp m_p``). ``normalize`` rescales the map by the
    least-squares optimal factor first, as the authors' code does (captum's ``normalize``);
    ``score`` is what ``f`` returns for the target: ``logit`` (default) or ``probability``.
    Lower is better.
    """

    category = Category.FAITHFULNESS

    def __init__(
        self,
        noise_std: float = 0.1,
        n_perturb_samples: int = 10,
        normalize: bool = True,
        target: str = "label",
        score: str = "logit",
    ) -> None:
        self.noise_std = check_number("noise_std", noise_std, above=0)
        self.n_perturb_samples = check_int("n_perturb_samples", n_perturb_samples, minimum=1)
        self.normalize = check_bool("normalize", normalize)
        self.target = check_choice("target", target, TARGETS)
        self.score = check_choice("score", score, SCORES)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        x = batch.images
        targets = explained_targets(ctx, batch, self.target)
        noise_of = _keyed_draws(x, ctx.seed + _INFIDELITY_STREAM, keyed_normal)

        def forward(inputs: Tensor) -> Tensor:
            logits = ctx.forward(inputs)
            return ctx.probs(logits) if self.score == "probability" else logits

        def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
            noise = self.noise_std * noise_of(inputs)
            return noise, inputs - noise

        scores = infidelity(
            forward,
            perturb,
            x,
            maps[:, None].expand_as(x),
            target=targets,
            n_perturb_samples=self.n_perturb_samples,
            max_examples_per_batch=_per_batch(ctx, x.shape[0], self.n_perturb_samples),
            normalize=self.normalize,
        )
        return MetricOutput(scores={"": scores.float()})


class MaxSensitivity(_Yeh):
    """Max-sensitivity (Yeh et al. 2019): max over perturbations of ‖m(x + δ) − m(x)‖ / ‖m(x)‖.

    ``δ ~ U[-radius, radius]`` i.i.d. per input element in normalised space (captum's default
    perturbation), ``n_perturb_samples`` draws per image keyed by ``(seed, image content, draw)``
    (independent of the batch); the
    method of the run is re-run on each perturbed image for the same class. ``norm``: ``fro``
    (captum's default) or ``inf``. Lower is better. The unperturbed map is recomputed by captum,
    so a stochastic method is compared with a fresh draw of itself.
    """

    category = Category.ROBUSTNESS

    def __init__(
        self,
        radius: float = 0.02,
        n_perturb_samples: int = 10,
        norm: str = "fro",
        target: str = "label",
    ) -> None:
        self.radius = check_number("radius", radius, above=0)
        self.n_perturb_samples = check_int("n_perturb_samples", n_perturb_samples, minimum=1)
        self.norm = check_choice("norm", norm, NORMS)
        self.target = check_choice("target", target, TARGETS)

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        if ctx.method is None:
            raise ValueError(
                "MaxSensitivity re-runs the attribution method, but ctx.method is None."
            )
        method = ctx.method
        x = batch.images
        targets = explained_targets(ctx, batch, self.target)
        uniform_of = _keyed_draws(x, ctx.seed + _SENSITIVITY_STREAM, keyed_uniform)

        def explain(inputs: Tensor | tuple[Tensor], target: Tensor) -> Tensor | tuple[Tensor]:
            # captum's convention: a tuple in (the unperturbed inputs) -> a tuple out
            single = inputs[0] if isinstance(inputs, tuple) else inputs
            target = torch.as_tensor(target, device=single.device).reshape(-1)
            if target.shape[0] != single.shape[0]:  # captum leaves a one-image batch's target as is
                target = target.repeat_interleave(single.shape[0] // target.shape[0])
            with torch.enable_grad():  # captum calls this under no_grad; gradient methods need it
                out = method(ctx.model, single, target)
            return (out,) if isinstance(inputs, tuple) else out

        def perturb(inputs: Tensor, radius: float) -> Tensor:
            return inputs + (2 * uniform_of(inputs) - 1) * radius

        scores = sensitivity_max(
            explain,
            x,
            perturb_func=perturb,
            perturb_radius=self.radius,
            n_perturb_samples=self.n_perturb_samples,
            norm_ord=self.norm if self.norm == "fro" else float("inf"),
            max_examples_per_batch=_per_batch(ctx, x.shape[0], self.n_perturb_samples),
            target=targets,
        )
        return MetricOutput(scores={"": scores.float()})
