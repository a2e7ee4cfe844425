"""The superpixel family: methods whose players are SLIC superpixels.

Feature ablation (captum), LIME and kernel SHAP three ways each: by captum (``CaptumLime``,
``CaptumKernelShap``), by the ``lime`` / ``shap`` packages (``Lime``, ``KernelShap``) and batched in
torch (``BatchedLime``, ``BatchedKernelShap``). :class:`Superpixel` holds what they all share:
SLIC's settings, declared with their defaults and checked once, the check of the batch knob, and
the superpixels themselves (computed per image with scikit-image on the CPU, or by the data
loader's workers); :class:`SampledSuperpixel` adds the samples per image and the seed of the
methods that draw coalitions (LIME, kernel SHAP). :class:`CaptumSuperpixel` and
:class:`PackageSuperpixel` declare the knob of each family (captum's ``internal_batch_size``, the
packages' ``batch_size``); a method declares only its own keys and passes the rest on.

Feature ablation runs every ablated copy of every image of the batch through the model in chunks
bounded by ``internal_batch_size``. The captum and package versions of LIME and kernel SHAP fit one
surrogate per image by design: they loop over the images (captum does so internally too) and bound
each image's forward passes with ``internal_batch_size`` / ``batch_size``. The batched versions
(:class:`BatchedSurrogate`) draw every image's coalitions at once, send all perturbed images of the
batch through the model in chunks of ``batch_size`` and solve every surrogate in one batched call;
their samplers and solvers are :mod:`bench.methods.surrogate`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from captum.attr import FeatureAblation as _CaptumFeatureAblation
from captum.attr import KernelShap as _CaptumKernelShap
from captum.attr import Lime as _CaptumLime
from torch import Tensor, nn

from bench.core.context import chunks
from bench.core.errors import check_choice, check_int, check_number
from bench.core.rng import content_keys, per_image_seeds
from bench.methods import surrogate
from bench.methods.base import Method, batch_limit, check_batch_size, chunked_pairs
from bench.methods.perturbation import perturbations_per_eval, probabilities

#: The fills of :class:`KernelShap`: shap's image masker (``shap.maskers.Image``).
FILLS = ("blur", "inpaint_telea", "inpaint_ns")
#: The fills :class:`BatchedKernelShap` reproduces on the device (shap's masker, ``blur(k,k)``).
BATCHED_FILLS = ("blur",)


def superpixels(images: Tensor, n_segments: int, compactness: float, sigma: float = 0.0) -> Tensor:
    """SLIC superpixels (Achanta et al., TPAMI 2012) of each image, long ``[B, H, W]`` on its device.

    Each image is min-max scaled to [0, 1] first (normalised inputs have no fixed range); labels
    start at 0. Computed per image with scikit-image on the CPU. ``sigma`` is SLIC's Gaussian
    pre-smoothing in pixels: with 0 (scikit-image's default) SLIC works in Lab on the raw pixels,
    and on a noisy input (Smooth MPRT's noise, 10% of the range) the colour term shatters the
    segments and connectivity enforcement merges them into one or two superpixels; ``sigma=1``
    keeps ~48 of 50 there.
    """
    from skimage.segmentation import slic

    x = images.detach().float()
    lo = x.flatten(1).amin(1)[:, None, None, None]
    hi = x.flatten(1).amax(1)[:, None, None, None]
    x = ((x - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
    segs = [
        slic(
            img,
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma,
            start_label=0,
            channel_axis=-1,
        )
        for img in x
    ]
    return torch.from_numpy(np.stack(segs)).long().to(images.device)


def _segments_of(images: Tensor, **slic: float) -> dict[str, Tensor]:
    """The loader's input of the superpixel methods (a module-level function: picklable)."""
    return {"segments": superpixels(images, **slic)}


class Superpixel(Method):
    """Base class of the superpixel methods: the settings they all share, with their defaults,
    declared and checked once here, and the superpixels.

    A subclass declares only its own keys (its fill, kernel, blur) and passes the rest on as
    ``**superpixel``: its config keys are its own and those of its bases (what
    ``bench.config.validate`` and the YAMLs see). The batch knob comes first, positional only:
    its config key (:attr:`knob`) is declared by the family (:class:`CaptumSuperpixel`,
    :class:`PackageSuperpixel`).

    Args:
        batch: the batch knob's value (positional only), kept under the subclass's :attr:`knob`:
            most perturbed images per forward pass; ``auto``: 64 on a CPU, 1024 on a GPU
            (:func:`bench.methods.base.batch_limit`); null: no bound.
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see :func:`superpixels`).
    """

    #: The config key of the batch knob: captum's ``internal_batch_size`` or the packages'
    #: ``batch_size``.
    knob: ClassVar[str]

    def __init__(
        self,
        batch: int | str | None,
        /,
        n_segments: int = 50,
        compactness: float = 10.0,
        slic_sigma: float = 0.0,
    ) -> None:
        super().__init__(reduction="sum")
        self.n_segments = check_int("n_segments", n_segments, minimum=1)
        self.compactness = check_number("compactness", compactness, above=0)
        self.slic_sigma = check_number("slic_sigma", slic_sigma, minimum=0)
        setattr(self, self.knob, check_batch_size(self.knob, batch))

    def segments(self, images: Tensor) -> Tensor:
        """SLIC superpixels ``[B, H, W]`` of ``images``: the loader's (computed in its workers)
        when it made them for these images, else computed here."""
        given = self.given_input(images, "segments")
        if given is not None:
            return given.to(images.device)
        return superpixels(images, self.n_segments, self.compactness, self.slic_sigma)

    def loader_inputs(self) -> Callable[[Tensor], dict[str, Tensor]]:
        return partial(
            _segments_of,
            n_segments=self.n_segments,
            compactness=self.compactness,
            sigma=self.slic_sigma,
        )


class SampledSuperpixel(Superpixel):
    """A superpixel method that draws perturbed samples (coalitions): LIME and kernel SHAP.

    Args:
        batch: :class:`Superpixel`'s (positional only).
        n_samples: perturbed samples (coalitions) per image.
        seed: the run seed.
        **superpixel: :class:`Superpixel`'s keys.
    """

    def __init__(
        self, batch: int | str | None, /, n_samples: int = 1000, seed: int = 0, **superpixel: Any
    ) -> None:
        self.n_samples = check_int("n_samples", n_samples, minimum=1)  # checked first, then SLIC's
        super().__init__(batch, **superpixel)
        self.seed = check_int("seed", seed)


# ------------------------------------------------------------------------------------ by captum


class CaptumSuperpixel(Superpixel):
    """The captum family: absent superpixels take ``fill``; captum's ``internal_batch_size`` knob.

    Args:
        fill: fill value in normalised space (0 = the dataset mean colour).
        internal_batch_size: most perturbed images per forward pass (:class:`Superpixel`'s batch
            knob).
        **superpixel: the keys of the other bases (:class:`Superpixel`, :class:`SampledSuperpixel`).
    """

    knob = "internal_batch_size"

    def __init__(
        self, fill: float = 0.0, internal_batch_size: int | str | None = "auto", **superpixel: Any
    ) -> None:
        super().__init__(internal_batch_size, **superpixel)
        self.fill = check_number("fill", fill)


class FeatureAblation(CaptumSuperpixel):
    """Superpixel ablation: the probability drop when a SLIC superpixel is set to ``fill``, by captum.

    Args:
        fill, internal_batch_size: :class:`CaptumSuperpixel`'s; the knob bounds the ablated images
            over all images of the batch per forward pass.
        n_segments, compactness, slic_sigma: SLIC's (:class:`Superpixel`).
    """

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        seg = self.segments(images)
        per_eval = perturbations_per_eval(self.internal_batch_size, images, int(seg.max()) + 1)
        a = _CaptumFeatureAblation(lambda x: probabilities(model, x)).attribute(
            images,
            target=targets,
            baselines=self.fill,
            feature_mask=seg[:, None],
            perturbations_per_eval=per_eval,
        )
        return a[:, 0]


class CaptumLime(CaptumSuperpixel, SampledSuperpixel):
    """LIME (Ribeiro et al., KDD 2016) over SLIC superpixels, by captum's ``Lime``.

    Captum's defaults: Lasso surrogate (alpha 0.01), exponential kernel on the cosine distance.
    Off superpixels take ``fill``. One surrogate per image (captum loops over a batch too); each
    image's sampling is seeded from ``(seed, image content)`` inside ``torch.random.fork_rng`` (captum
    samples from the global RNG; its state is restored afterwards), so batching does not change maps.

    Args:
        fill, internal_batch_size: :class:`CaptumSuperpixel`'s; the knob bounds one image's
            perturbed samples per forward pass (captum's perturbations_per_eval).
        n_samples, seed: :class:`SampledSuperpixel`'s.
        n_segments, compactness, slic_sigma: SLIC's (:class:`Superpixel`).
    """

    _explainer = _CaptumLime
    _exact_single_player = False

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        seg = self.segments(images)
        explainer = self._explainer(lambda x: probabilities(model, x))
        devices = [images.device] if images.device.type == "cuda" else []
        out = []
        for i, s in enumerate(per_image_seeds(images, self.seed)):  # one surrogate per image
            if self._exact_single_player and int(seg[i].max()) == 0:
                out.append(self._single_player(model, images[i : i + 1], targets[i]))
                continue
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(s)
                a = explainer.attribute(
                    images[i : i + 1],
                    target=targets[i : i + 1],
                    baselines=self.fill,
                    feature_mask=seg[i : i + 1, None],
                    n_samples=self.n_samples,
                    perturbations_per_eval=batch_limit(self.internal_batch_size, images.device)
                    or self.n_samples,
                )
            out.append(a[:, 0])
        return torch.cat(out)


class CaptumKernelShap(CaptumLime):
    """Kernel SHAP (Lundberg & Lee, NeurIPS 2017) over SLIC superpixels, by captum's ``KernelShap``.

    Same sampling, seeding, fill and knobs as :class:`CaptumLime` (captum's KernelShap is its Lime
    with the Shapley kernel and a linear-regression surrogate). An image with a single superpixel
    gets the exact value ``f(x) - f(fill)`` (captum fails there).
    """

    _explainer = _CaptumKernelShap
    _exact_single_player = True

    def _single_player(self, model: nn.Module, image: Tensor, target: Tensor) -> Tensor:
        """One superpixel (SLIC on a flat or very noisy image): captum's KernelShap has no coalition
        size between none and all and fails on a NaN distribution; the one player's Shapley value
        is exactly ``f(x) - f(fill)`` (efficiency), given to every pixel."""
        with torch.no_grad():
            p = probabilities(model, torch.cat([image, torch.full_like(image, self.fill)]))
        p = p[:, target]
        return (p[0] - p[1]).expand(1, *image.shape[-2:]).clone()


# -------------------------------------------------------------------------- by the packages


@contextmanager
def lime_progress_off(module) -> Iterator[None]:
    """lime 0.2 draws a progress bar per image (``tqdm`` over its samples) with no switch to turn it
    off; hand ``module`` (``lime.lime_image``) a disabled ``tqdm`` for the call, so a sweep's log is
    not one bar per image."""
    original = module.tqdm
    module.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original


class PackageSuperpixel(SampledSuperpixel):
    """The ``lime`` / ``shap`` package family (and its batched versions): one image at a time in
    numpy, forward passes bounded by the packages' ``batch_size`` knob.

    Args:
        batch_size: most perturbed samples per forward pass (:class:`Superpixel`'s batch knob).
        **sampled: :class:`SampledSuperpixel`'s and :class:`Superpixel`'s keys.
    """

    knob = "batch_size"

    def __init__(self, batch_size: int | str | None = "auto", **sampled: Any) -> None:
        super().__init__(batch_size, **sampled)


class Lime(PackageSuperpixel):
    """LIME (Ribeiro et al., KDD 2016) by the ``lime`` package's ``LimeImageExplainer``.

    Its defaults: ridge surrogate, exponential kernel (width 0.25) on the cosine distance of the
    superpixel indicators; superpixels from SLIC (not lime's default quickshift); off superpixels
    take ``hide_color`` (0 = the mean colour in normalised space). The package explains one image
    at a time with numpy, so this wrapper loops over the batch; ``batch_size`` bounds its forward
    passes. Each image's ``random_state`` is derived from ``(seed, image content)``.

    Args:
        n_samples: perturbed samples per image (lime's num_samples; its default 1000).
        seed: :class:`SampledSuperpixel`'s.
        n_segments, compactness, slic_sigma: SLIC's (:class:`Superpixel`).
        kernel_width: lime's kernel width.
        hide_color: fill value in normalised space.
        batch_size: most perturbed samples per forward pass (:class:`PackageSuperpixel`'s knob).
    """

    def __init__(self, kernel_width: float = 0.25, hide_color: float = 0.0, **package: Any) -> None:
        super().__init__(**package)
        self.kernel_width = check_number("kernel_width", kernel_width, above=0)
        self.hide_color = check_number("hide_color", hide_color)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from lime import lime_image

        seg = self.segments(images)
        device = images.device

        def classify(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
            with torch.no_grad():
                return probabilities(model, x.to(device)).cpu().numpy()

        hwc = images.detach().float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        seg_np = seg.cpu().numpy()
        out = np.zeros(seg_np.shape, dtype=np.float32)
        for i, s in enumerate(per_image_seeds(images, self.seed)):
            explainer = lime_image.LimeImageExplainer(
                kernel_width=self.kernel_width, random_state=s
            )
            t = int(targets[i])
            with lime_progress_off(lime_image):
                exp = explainer.explain_instance(
                    hwc[i],
                    classify,
                    labels=(t,),
                    top_labels=None,
                    hide_color=self.hide_color,
                    num_samples=self.n_samples,
                    batch_size=batch_limit(self.batch_size, device) or self.n_samples,
                    segmentation_fn=lambda _img, i=i: seg_np[i],
                )
            weights = np.zeros(seg_np[i].max() + 1, dtype=np.float32)
            for feature, w in exp.local_exp[t]:
                weights[feature] = w
            out[i] = weights[seg_np[i]]
        return torch.from_numpy(out).to(device)


def _underdetermined(explainer) -> bool:
    """Whether a ``shap.KernelExplainer``'s last coalitions leave its values undetermined
    (:func:`bench.methods.surrogate.kernel_shap_underdetermined` on its ``maskMatrix``)."""
    n = explainer.nsamplesAdded
    masks = torch.from_numpy(np.asarray(explainer.maskMatrix[:n], dtype=np.float64))[None]
    weights = torch.from_numpy(np.asarray(explainer.kernelWeights[:n], dtype=np.float64))[None]
    return bool(surrogate.kernel_shap_underdetermined(masks, weights)[0])


class KernelShap(PackageSuperpixel):
    """Kernel SHAP (Lundberg & Lee, NeurIPS 2017) by the ``shap`` package's ``KernelExplainer``.

    Players are SLIC superpixels; an absent superpixel takes the pixels of a reference image made by
    shap's image masker (``shap.maskers.Image``): ``blur`` = a ``blur_size`` box blur of the image,
    ``inpaint_telea`` / ``inpaint_ns`` = OpenCV inpainting of the absent superpixels (one masker call
    per coalition: slow). Value = softmax probability of the target. shap is numpy-only and one
    image at a time: this wrapper loops over the batch and bounds forward passes with
    ``batch_size``. ``KernelExplainer`` samples from numpy's global RNG: it is seeded per image from
    ``(seed, image content)`` and its previous state is restored afterwards.

    Args:
        n_samples: coalitions per image (shap's nsamples).
        seed: :class:`SampledSuperpixel`'s.
        n_segments, compactness, slic_sigma: SLIC's (:class:`Superpixel`).
        fill: ``blur``, ``inpaint_telea`` or ``inpaint_ns`` (:attr:`fills`).
        blur_size: side of the box blur (``blur`` only).
        batch_size: most coalition images per forward pass (:class:`PackageSuperpixel`'s knob).
    """

    #: The accepted ``fill`` values.
    fills = FILLS

    def __init__(self, fill: str = "blur", blur_size: int = 16, **package: Any) -> None:
        super().__init__(**package)
        self.fill = check_choice("fill", fill, self.fills)
        self.blur_size = check_int("blur_size", blur_size, minimum=1)

    def warn_underdetermined(self, loose: int, images: int, why: str) -> None:
        """Say, once per run, that the coalitions of ``loose`` of ``images`` images do not
        determine their Shapley values; ``why`` says what the maps are there."""
        if loose and not getattr(self, "_warned", False):
            self._warned = True  # once per run: the same settings give the same shortfall
            warnings.warn(
                f"{self.name}: n_samples={self.n_samples} coalitions do not determine the Shapley "
                f"values of {loose} of {images} images{why}. Raise n_samples (at least twice the "
                "superpixels) or lower n_segments.",
                stacklevel=3,
            )

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        device = images.device
        seg_np = self.segments(images).cpu().numpy()
        hwc = images.detach().float().permute(0, 2, 3, 1).cpu().numpy()
        out = np.zeros(seg_np.shape, dtype=np.float32)
        loose = 0
        for i, s in enumerate(per_image_seeds(images, self.seed)):
            phi, explainer = self._explain(model, hwc[i], seg_np[i], int(targets[i]), s, device)
            m = int(seg_np[i].max()) + 1
            loose += m > 1 and _underdetermined(explainer)
            out[i] = np.asarray(phi, dtype=np.float32).reshape(-1)[:m][seg_np[i]]
        why = "; shap's solution there is not unique (and can be huge)"
        self.warn_underdetermined(loose, len(out), why)
        return torch.from_numpy(out).to(device)

    def _explain(
        self, model: nn.Module, x: np.ndarray, sp: np.ndarray, t: int, seed: int, device
    ) -> tuple[list, object]:
        """shap's values for target ``t`` of one image ``x`` ``[H, W, C]`` over its superpixels
        ``sp`` ``[H, W]``, and the explainer (its coalitions); numpy's global RNG is seeded with
        ``seed`` meanwhile, forward passes run on ``device``."""
        import shap

        h, w, c = x.shape
        spec = f"blur({self.blur_size},{self.blur_size})" if self.fill == "blur" else self.fill
        # one masker per image: shap's keeps the blur of the last image it saw under the id() of a
        # temporary array, which the next image's temporary can reuse (it then gets the previous
        # image's blur)
        masker = shap.maskers.Image(spec, shape=(h, w, c))
        m = int(sp.max()) + 1
        blurred = masker(np.zeros(h * w * c, dtype=bool), x)[0][0] if self.fill == "blur" else None

        def value(z: np.ndarray) -> np.ndarray:
            keep = z[:, sp].astype(bool)  # [n, H, W]
            if blurred is not None:
                batch = np.where(keep[..., None], x[None], blurred[None])
            else:
                batch = np.stack(
                    [masker(np.repeat(k[..., None], c, -1).ravel(), x)[0][0] for k in keep]
                )
            res = []
            for part in chunks(len(batch), batch_limit(self.batch_size, device)):
                xt = torch.from_numpy(np.ascontiguousarray(batch[part], dtype=np.float32))
                with torch.no_grad():
                    p = probabilities(model, xt.permute(0, 3, 1, 2).to(device))
                res.append(p[:, t].cpu().numpy())
            return np.concatenate(res)

        state = np.random.get_state()
        try:
            np.random.seed(seed)
            explainer = shap.KernelExplainer(value, np.zeros((1, m)))
            phi = explainer.shap_values(
                np.ones((1, m)), nsamples=self.n_samples, silent=True, l1_reg=False
            )
        finally:
            np.random.set_state(state)
        return phi, explainer


# ------------------------------------------------------------------------------ batched in torch


class BatchedSurrogate(PackageSuperpixel):
    """LIME or kernel SHAP for the whole batch at once: coalitions ``[B, R, M]`` drawn from
    counter-based random numbers keyed by ``(seed, image content)`` (so an image's samples never
    depend on its batch, the chunk size or the device), the target's softmax probability of every
    perturbed image of the batch, built on the device and sent through the model in chunks of at
    most ``batch_size`` images (:func:`bench.core.context.for_pairs`, which halves them after an
    out-of-memory error), and one batched float64 solve of every image's surrogate. Images of a
    batch may have different numbers of superpixels ``M_i``: columns past an image's ``M_i`` are
    zero (and get coefficient 0), rows an image does not use have weight 0.

    A mixin before the package wrapper whose estimator it batches (``BatchedLime(BatchedSurrogate,
    Lime)``): the same settings, another :meth:`attribute`.
    """

    def fill_images(self, images: Tensor) -> Tensor:
        """What an absent superpixel shows, ``[B, 3, H, W]``."""
        raise NotImplementedError

    def coalitions(self, keys: Tensor, n_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``masks`` bool ``[B, R, M]``, ``weights`` ``[B, R]``, ``valid`` bool ``[B, R]``."""
        raise NotImplementedError

    def fit(self, masks: Tensor, weights: Tensor, values: Tensor, n_features: Tensor) -> Tensor:
        """Coefficients ``[B, M]`` of each image's surrogate."""
        raise NotImplementedError

    def values(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        segments: Tensor,
        masks: Tensor,
        valid: Tensor,
    ) -> Tensor:
        """Softmax probability of the target ``[B, R]`` (float64; 0 where not ``valid``) of every
        valid coalition, at most ``batch_size`` perturbed images per forward pass."""
        b, r, m = masks.shape
        h, w = images.shape[-2:]
        fill = self.fill_images(images)
        pixels = segments.flatten(1)
        rows = masks.reshape(b * r, m)
        todo = valid.flatten().nonzero()[:, 0]
        out = torch.zeros(b * r, dtype=torch.float64, device=images.device)

        def chunk(_: slice, item: Tensor, __: Tensor) -> None:
            pair = todo[item]
            img = pair // r
            keep = rows[pair].gather(1, pixels[img]).view(-1, 1, h, w)
            # channels-last, the layout the package wrappers' numpy images reach the model in: the
            # faster one for CPU convolutions (1.25x ResNet-18, 1.7x the shapes CNN, one thread)
            x = torch.where(keep, images[img], fill[img]).contiguous(
                memory_format=torch.channels_last
            )
            p = probabilities(model, x).gather(1, targets[img][:, None])[:, 0]
            out[pair] = p.double()

        with torch.no_grad():  # auto: the device's cap; halved on out-of-memory like any chunk
            chunked_pairs(self, "batch_size", len(todo), 1, images.device, chunk)
        return out.view(b, r)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        seg = self.segments(images)
        n_features = seg.flatten(1).amax(1) + 1
        masks, weights, valid = self.coalitions(content_keys(images, self.seed), n_features)
        values = self.values(model, images, targets, seg, masks, valid)
        coef = self.fit(masks, weights, values, n_features)
        return coef.float().gather(1, seg.flatten(1)).view_as(seg)


class BatchedLime(BatchedSurrogate, Lime):
    """LIME (Ribeiro et al., KDD 2016), the ``lime`` package's image estimator batched in torch.

    As :class:`Lime`, with its settings (lime's ``LimeImageExplainer`` defaults): SLIC
    superpixels, samples with each superpixel on or off with probability 1/2 and the first sample
    all on, weights ``sqrt(exp(-d^2 / kernel_width^2))`` of the cosine distance ``d`` to the all-on
    sample, and a weighted ``Ridge(alpha=1)`` with intercept on every superpixel (lime's
    ``feature_selection='auto'`` with its 100000 features keeps them all); off superpixels take
    ``hide_color``. Samples come from counter-based random numbers keyed by ``(seed, image
    content)``, not numpy's: the same estimator, other draws than the package. ``batch_size``
    bounds the perturbed images over all images of the batch per forward pass.
    """

    def fill_images(self, images: Tensor) -> Tensor:
        return torch.full_like(images, self.hide_color)

    def coalitions(self, keys: Tensor, n_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        masks = surrogate.lime_coalitions(keys, n_features, self.n_samples)
        weights = surrogate.lime_kernel(
            surrogate.cosine_distance_to_ones(masks, n_features), self.kernel_width
        )
        return masks, weights, torch.ones_like(masks[..., 0])

    def fit(self, masks: Tensor, weights: Tensor, values: Tensor, n_features: Tensor) -> Tensor:
        return surrogate.ridge_fit(masks, weights, values, alpha=1.0)[0]


class BatchedKernelShap(BatchedSurrogate, KernelShap):
    """Kernel SHAP (Lundberg & Lee, NeurIPS 2017), ``shap.KernelExplainer`` batched in torch.

    As :class:`KernelShap`, with its settings: SLIC superpixels are the players, an absent one shows
    a ``blur_size`` box blur of the image (shap's ``maskers.Image('blur(k,k)')``, i.e. ``cv2.blur``,
    see :func:`bench.methods.surrogate.box_blur`; ``fill`` accepts ``blur`` only: the inpainting
    fills are not batched), value = softmax probability of the target, and ``l1_reg=False``: the
    Shapley-kernel weighted least squares under the efficiency constraint
    (:func:`bench.methods.surrogate.kernel_shap_fit`). Coalitions follow shap's plan
    (:func:`bench.methods.surrogate.kernel_shap_coalitions`: enumerated small/large sizes, then
    random ones; ``n_samples`` capped at ``2^M - 2``) from counter-based random numbers keyed by
    ``(seed, image content)``. An image with one superpixel gets ``f(x) - f(blurred)`` exactly.
    ``batch_size`` bounds the coalition images over all images of the batch per forward pass.
    """

    fills = BATCHED_FILLS

    def fill_images(self, images: Tensor) -> Tensor:
        return surrogate.box_blur(images, self.blur_size)

    def coalitions(self, keys: Tensor, n_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return surrogate.kernel_shap_coalitions(keys, n_features, self.n_samples)

    def fit(self, masks: Tensor, weights: Tensor, values: Tensor, n_features: Tensor) -> Tensor:
        loose = surrogate.kernel_shap_underdetermined(masks[:, 2:], weights[:, 2:], n_features)
        if bool(loose.any()):
            why = (
                f" (up to {int(n_features[loose].max())} superpixels); their maps are the "
                "minimum-norm solution"
            )
            self.warn_underdetermined(int(loose.sum()), len(loose), why)
        return surrogate.kernel_shap_fit(
            masks[:, 2:], weights[:, 2:], values[:, 2:], values[:, 0], values[:, 1], n_features
        )
