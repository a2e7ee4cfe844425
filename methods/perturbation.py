"""Perturbation methods: the model is only queried, never differentiated.

Occlusion, RISE and feature ablation run every perturbed copy of every image of the batch through
the model in chunks bounded by one knob (``internal_batch_size``). LIME and kernel SHAP fit one
surrogate per image by design: the ``lime``/``shap`` wrappers and the captum ones loop over the
images (captum does so internally too) and bound each image's forward passes with ``batch_size`` /
``internal_batch_size``. Superpixels come from scikit-image's SLIC, computed per image on the CPU.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import FeatureAblation as _CaptumFeatureAblation
from captum.attr import KernelShap as _CaptumKernelShap
from captum.attr import Lime as _CaptumLime
from captum.attr import Occlusion as _CaptumOcclusion
from torch import Tensor, nn

from bench.core.context import chunks
from bench.core.errors import check_choice, check_int, check_number
from bench.core.rng import per_image_seeds
from bench.methods.base import Method, batch_limit, check_batch_size, chunked_pairs


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


def _probs(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).float().softmax(-1)


def _per_eval(knob: int | str | None, images: Tensor, perturbations: int) -> int:
    """captum's ``perturbations_per_eval`` for a knob bounding the images per forward over the
    whole batch: the knob's limit shared by the batch's images, at most ``perturbations`` (captum
    stacks that many copies of the batch up front, so null means "all of them", not unbounded)."""
    limit = batch_limit(knob, images.device)
    if limit is None:
        return max(1, perturbations)
    return max(1, min(perturbations, limit // images.shape[0]))


class Occlusion(Method):
    """Occlusion (Zeiler & Fergus, ECCV 2014): score drop when a square window is filled, by captum.

    The target logit's drop, averaged over the windows covering each pixel (captum's rule).

    Args:
        window: side of the square window in pixels.
        stride: step between windows in pixels.
        fill: fill value in normalised space (0 = the dataset mean colour).
        internal_batch_size: most occluded images (over all images of the batch) per forward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
    """

    def __init__(
        self,
        window: int = 16,
        stride: int = 8,
        fill: float = 0.0,
        internal_batch_size: int | str | None = "auto",
    ) -> None:
        super().__init__(reduction="sum")
        self.window = check_int("window", window, minimum=1)
        self.stride = check_int("stride", stride, minimum=1)
        self.fill = check_number("fill", fill)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        b, c = images.shape[:2]
        h, w = images.shape[-2:]
        windows = math.prod(  # captum's count of window positions (null: all in one pass)
            math.ceil(max(0, n - self.window) / self.stride) + 1 for n in (h, w)
        )
        per_eval = _per_eval(self.internal_batch_size, images, windows)
        a = _CaptumOcclusion(model).attribute(
            images,
            sliding_window_shapes=(c, self.window, self.window),
            strides=(c, self.stride, self.stride),
            baselines=self.fill,
            target=targets,
            perturbations_per_eval=per_eval,
        )
        return a[:, 0]  # the window spans all channels: they are equal


class RISE(Method):
    """RISE (Petsiuk et al., BMVC 2018): the mean of random masks weighted by the masked score.

    ``S = sum_i p_c(x * M_i) M_i / (N p)``; ``p_c`` the softmax probability. Masks: a binary
    grid of ``cell_size``-pixel cells kept with probability ``p``, upsampled bilinearly to
    ``(cells + 1) * cell_size`` and cropped at a random shift. They are drawn once per run (on the
    first call for an input size, from a CPU generator seeded with ``seed``) and reused for every
    image, so maps do not depend on batching. Masked pixels are 0 in normalised space (the mean
    colour), as in the reference code. The paper: N = 4000 (ResNet-50), 7x7 cells at 224 px, p = 0.5.

    Args:
        n_masks: number of masks N.
        cell_size: side of a grid cell in pixels (16 at 112 px = the paper's 7x7 grid).
        p: probability that a cell is kept.
        internal_batch_size: most masked images (over all images of the batch) per forward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        seed: the run seed.
    """

    def __init__(
        self,
        n_masks: int = 4000,
        cell_size: int = 16,
        p: float = 0.5,
        internal_batch_size: int | str | None = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(reduction="sum")
        self.n_masks = check_int("n_masks", n_masks, minimum=1)
        self.cell_size = check_int("cell_size", cell_size, minimum=1)
        self.p = check_number("p", p, above=0, maximum=1)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)
        self.seed = check_int("seed", seed)
        self._masks: dict[tuple, Tensor] = {}

    def masks(self, h: int, w: int, device: torch.device) -> Tensor:
        """The run's masks ``[N, H, W]`` for inputs of size ``h x w`` (drawn once, then cached)."""
        key = (h, w, str(device))
        if key not in self._masks:
            gen = torch.Generator().manual_seed(self.seed)
            c = self.cell_size
            gh, gw = math.ceil(h / c), math.ceil(w / c)
            grid = (torch.rand(self.n_masks, 1, gh, gw, generator=gen) < self.p).float()
            up = F.interpolate(
                grid, size=((gh + 1) * c, (gw + 1) * c), mode="bilinear", align_corners=False
            )[:, 0]
            dy = torch.randint(0, c, (self.n_masks,), generator=gen)
            dx = torch.randint(0, c, (self.n_masks,), generator=gen)
            rows = (dy[:, None] + torch.arange(h))[:, :, None]
            cols = (dx[:, None] + torch.arange(w))[:, None, :]
            n = torch.arange(self.n_masks)[:, None, None]
            self._masks[key] = up[n, rows, cols].contiguous().to(device)
        return self._masks[key]

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        b, _, h, w = images.shape
        masks = self.masks(h, w, images.device)
        n = self.n_masks
        sal = torch.zeros(b, h, w, device=images.device)

        def chunk(_: slice, img: Tensor, m: Tensor) -> None:
            p = _probs(model, images[img] * masks[m][:, None]).gather(1, targets[img][:, None])
            sal.index_add_(0, img, p[:, :, None] * masks[m])

        with torch.no_grad():
            chunked_pairs(self, "internal_batch_size", b, n, images.device, chunk, "rise")
        return sal / (n * self.p)


def _segments_of(images: Tensor, **slic: float) -> dict[str, Tensor]:
    """The loader's input of the superpixel methods (a module-level function: picklable)."""
    return {"segments": superpixels(images, **slic)}


class _Superpixel(Method):
    """Shared settings of the superpixel methods."""

    def __init__(self, n_segments: int, compactness: float, slic_sigma: float = 0.0) -> None:
        super().__init__(reduction="sum")
        self.n_segments = check_int("n_segments", n_segments, minimum=1)
        self.compactness = check_number("compactness", compactness, above=0)
        self.slic_sigma = check_number("slic_sigma", slic_sigma, minimum=0)

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


class FeatureAblation(_Superpixel):
    """Superpixel ablation: the probability drop when a SLIC superpixel is set to ``fill``, by captum.

    Args:
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see :func:`superpixels`).
        fill: fill value in normalised space (0 = the dataset mean colour).
        internal_batch_size: most ablated images (over all images of the batch) per forward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
    """

    def __init__(
        self,
        n_segments: int = 50,
        compactness: float = 10.0,
        slic_sigma: float = 0.0,
        fill: float = 0.0,
        internal_batch_size: int | str | None = "auto",
    ) -> None:
        super().__init__(n_segments, compactness, slic_sigma)
        self.fill = check_number("fill", fill)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        seg = self.segments(images)
        per_eval = _per_eval(self.internal_batch_size, images, int(seg.max()) + 1)
        a = _CaptumFeatureAblation(lambda x: _probs(model, x)).attribute(
            images,
            target=targets,
            baselines=self.fill,
            feature_mask=seg[:, None],
            perturbations_per_eval=per_eval,
        )
        return a[:, 0]


class CaptumLime(_Superpixel):
    """LIME (Ribeiro et al., KDD 2016) over SLIC superpixels, by captum's ``Lime``.

    Captum's defaults: Lasso surrogate (alpha 0.01), exponential kernel on the cosine distance.
    Off superpixels take ``fill``. One surrogate per image (captum loops over a batch too); each
    image's sampling is seeded from ``(seed, image content)`` inside ``torch.random.fork_rng`` (captum
    samples from the global RNG; its state is restored afterwards), so batching does not change maps.

    Args:
        n_samples: perturbed samples per image.
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see :func:`superpixels`).
        fill: fill value in normalised space (0 = the dataset mean colour).
        internal_batch_size: most perturbed samples per forward pass (captum's perturbations_per_eval);
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        seed: the run seed.
    """

    _explainer = _CaptumLime
    _exact_single_player = False

    def __init__(
        self,
        n_samples: int = 1000,
        n_segments: int = 50,
        compactness: float = 10.0,
        slic_sigma: float = 0.0,
        fill: float = 0.0,
        internal_batch_size: int | str | None = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(n_segments, compactness, slic_sigma)
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.fill = check_number("fill", fill)
        self.internal_batch_size = check_batch_size("internal_batch_size", internal_batch_size)
        self.seed = check_int("seed", seed)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        seg = self.segments(images)
        explainer = self._explainer(lambda x: _probs(model, x))
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
            p = _probs(model, torch.cat([image, torch.full_like(image, self.fill)]))[:, target]
        return (p[0] - p[1]).expand(1, *image.shape[-2:]).clone()


class Lime(_Superpixel):
    """LIME (Ribeiro et al., KDD 2016) by the ``lime`` package's ``LimeImageExplainer``.

    Its defaults: ridge surrogate, exponential kernel (width 0.25) on the cosine distance of the
    superpixel indicators; superpixels from SLIC (not lime's default quickshift); off superpixels
    take ``hide_color`` (0 = the mean colour in normalised space). The package explains one image
    at a time with numpy, so this wrapper loops over the batch; ``batch_size`` bounds its forward
    passes. Each image's ``random_state`` is derived from ``(seed, image content)``.

    Args:
        n_samples: perturbed samples per image (lime's num_samples; its default 1000).
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see :func:`superpixels`).
        kernel_width: lime's kernel width.
        hide_color: fill value in normalised space.
        batch_size: most perturbed samples per forward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        seed: the run seed.
    """

    def __init__(
        self,
        n_samples: int = 1000,
        n_segments: int = 50,
        compactness: float = 10.0,
        slic_sigma: float = 0.0,
        kernel_width: float = 0.25,
        hide_color: float = 0.0,
        batch_size: int | str | None = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(n_segments, compactness, slic_sigma)
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.kernel_width = check_number("kernel_width", kernel_width, above=0)
        self.hide_color = check_number("hide_color", hide_color)
        self.batch_size = check_batch_size("batch_size", batch_size)
        self.seed = check_int("seed", seed)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from lime import lime_image

        seg = self.segments(images)
        device = images.device

        def classify(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
            with torch.no_grad():
                return _probs(model, x.to(device)).cpu().numpy()

        hwc = images.detach().float().permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        seg_np = seg.cpu().numpy()
        out = np.zeros(seg_np.shape, dtype=np.float32)
        for i, s in enumerate(per_image_seeds(images, self.seed)):
            explainer = lime_image.LimeImageExplainer(
                kernel_width=self.kernel_width, random_state=s
            )
            t = int(targets[i])
            with _lime_progress_off(lime_image):
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


@contextmanager
def _lime_progress_off(module) -> Iterator[None]:
    """lime 0.2 draws a progress bar per image (``tqdm`` over its samples) with no switch to turn it
    off; hand it a disabled ``tqdm`` for the call, so a sweep's log is not one bar per image."""
    original = module.tqdm
    module.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original


FILLS = ("blur", "inpaint_telea", "inpaint_ns")


def _underdetermined(explainer) -> bool:
    """Whether a ``shap.KernelExplainer``'s last coalitions leave its values undetermined
    (:func:`bench.methods.surrogate.kernel_shap_underdetermined` on its ``maskMatrix``)."""
    from bench.methods.surrogate import kernel_shap_underdetermined

    n = explainer.nsamplesAdded
    masks = torch.from_numpy(np.asarray(explainer.maskMatrix[:n], dtype=np.float64))[None]
    weights = torch.from_numpy(np.asarray(explainer.kernelWeights[:n], dtype=np.float64))[None]
    return bool(kernel_shap_underdetermined(masks, weights)[0])


class KernelShap(_Superpixel):
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
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see :func:`superpixels`).
        fill: ``blur``, ``inpaint_telea`` or ``inpaint_ns``.
        blur_size: side of the box blur (``blur`` only).
        batch_size: most coalition images per forward pass;
            ``auto`` (default): 64 on a CPU, 1024 on a GPU (:func:`bench.methods.base.batch_limit`).
        seed: the run seed.
    """

    def __init__(
        self,
        n_samples: int = 1000,
        n_segments: int = 50,
        compactness: float = 10.0,
        slic_sigma: float = 0.0,
        fill: str = "blur",
        blur_size: int = 16,
        batch_size: int | str | None = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(n_segments, compactness, slic_sigma)
        self.fill = check_choice("fill", fill, FILLS)
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.blur_size = check_int("blur_size", blur_size, minimum=1)
        self.batch_size = check_batch_size("batch_size", batch_size)
        self.seed = check_int("seed", seed)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        import shap

        seg = self.segments(images)
        device = images.device
        seg_np = seg.cpu().numpy()
        hwc = images.detach().float().permute(0, 2, 3, 1).cpu().numpy()
        h, w, c = hwc.shape[1:]
        spec = f"blur({self.blur_size},{self.blur_size})" if self.fill == "blur" else self.fill
        out = np.zeros(seg_np.shape, dtype=np.float32)
        loose = 0
        for i, s in enumerate(per_image_seeds(images, self.seed)):
            # one masker per image: shap's keeps the blur of the last image it saw under the id()
            # of a temporary array, which the next image's temporary can reuse (it then gets the
            # previous image's blur)
            masker = shap.maskers.Image(spec, shape=(h, w, c))
            x, sp, t = hwc[i], seg_np[i], int(targets[i])
            m = int(sp.max()) + 1
            blurred = (
                masker(np.zeros(h * w * c, dtype=bool), x)[0][0] if self.fill == "blur" else None
            )

            def value(z: np.ndarray, x=x, sp=sp, t=t, blurred=blurred, masker=masker) -> np.ndarray:
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
                        res.append(
                            _probs(model, xt.permute(0, 3, 1, 2).to(device))[:, t].cpu().numpy()
                        )
                return np.concatenate(res)

            state = np.random.get_state()
            try:
                np.random.seed(s)
                explainer = shap.KernelExplainer(value, np.zeros((1, m)))
                phi = explainer.shap_values(
                    np.ones((1, m)), nsamples=self.n_samples, silent=True, l1_reg=False
                )
            finally:
                np.random.set_state(state)
            loose += m > 1 and _underdetermined(explainer)
            out[i] = np.asarray(phi, dtype=np.float32).reshape(-1)[:m][sp]
        if loose and not getattr(self, "_warned", False):
            self._warned = True  # once per run
            warnings.warn(
                f"{self.name}: n_samples={self.n_samples} coalitions do not determine the Shapley "
                f"values of {loose} of {len(out)} images; shap's solution there is not unique "
                "(and can be huge). Raise n_samples (at least twice the superpixels) or lower "
                "n_segments.",
                stacklevel=2,
            )
        return torch.from_numpy(out).to(device)
