"""Occlusion and RISE: perturbations of windows and random masks; the model is only queried.

Occlusion and RISE run every perturbed copy of every image of the batch through the model in chunks
bounded by one knob (``internal_batch_size``). The methods over SLIC superpixels (feature ablation,
LIME, kernel SHAP) are :mod:`bench.methods.superpixel`; they share this module's helpers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from captum.attr import Occlusion as _CaptumOcclusion
from torch import Tensor, nn

from bench.core.context import class_probabilities, probabilities_of
from bench.core.errors import check_int, check_number
from bench.methods.base import Method, batch_limit, check_batch_size, chunked_pairs


def probabilities(model: nn.Module, x: Tensor) -> Tensor:
    """The model's class probabilities ``[N, classes]`` (float32) of the inputs ``x``: the softmax,
    or a sigmoid per class for a model whose config declares a multi-label head
    (``model.probabilities=sigmoid``)."""
    return class_probabilities(model(x), probabilities_of(model))


def perturbations_per_eval(knob: int | str | None, images: Tensor, perturbations: int) -> int:
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
        per_eval = perturbations_per_eval(self.internal_batch_size, images, windows)
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
            p = probabilities(model, images[img] * masks[m][:, None])
            p = p.gather(1, targets[img][:, None])
            sal.index_add_(0, img, p[:, :, None] * masks[m])

        with torch.no_grad():
            chunked_pairs(self, "internal_batch_size", b, n, images.device, chunk, "rise")
        return sal / (n * self.p)
