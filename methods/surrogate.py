"""LIME and kernel SHAP batched in torch: the ``lime``/``shap`` packages' estimators, all images at once.

Each method is three steps, kept apart so each can be checked against the package on its own:
(a) a sampler of coalitions ``[B, S, M]`` (bool, one row per perturbed sample, one column per SLIC
superpixel), drawn from counter-based random numbers keyed by ``(seed, image content)``
(:func:`bench.core.rng.hash_uniform`), so an image's samples never depend on the batch it is in,
the chunk size or the device; (b) the model's softmax probability of the target on every
perturbed image of the batch, built on the device and sent through the model in chunks of at
most ``batch_size`` images (:func:`bench.core.context.for_pairs`, which halves them after an
out-of-memory error); (c) a batched float64 solve of each image's surrogate (:func:`ridge_fit`,
:func:`kernel_shap_fit`), which given the package's own samples returns the package's
coefficients. Images of a batch may have different numbers of superpixels ``M_i``: columns past an
image's ``M_i`` are zero (and get coefficient 0), rows an image does not use have weight 0.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.errors import check_choice, check_int, check_number
from bench.core.rng import content_keys, hash_uniform
from bench.methods.base import check_batch_size, chunked_pairs
from bench.methods.perturbation import _probs, _Superpixel

#: Counter stride per sample row: the random number of (row r, feature j) has index r * STRIDE + j.
STRIDE = 1 << 24

# ------------------------------------------------------------------------------ solvers


def cosine_distance_to_ones(masks: Tensor, n_features: Tensor | None = None) -> Tensor:
    """Cosine distance ``[B, S]`` of each indicator row of ``masks`` ``[B, S, M]`` to the all-ones row
    of its image's ``n_features`` ``[B]`` features (sklearn's ``pairwise_distances(metric='cosine')``,
    which lime uses: an all-zero row is at distance 1)."""
    z = masks.double()
    k = z.sum(-1)
    m = torch.full_like(k[:, 0], z.shape[-1]) if n_features is None else n_features.double()
    sim = torch.where(k > 0, k / (k.sqrt() * m.sqrt()[:, None]), torch.zeros_like(k))
    return (1 - sim).clamp(0, 2)


def lime_kernel(distances: Tensor, kernel_width: float = 0.25) -> Tensor:
    """lime's default kernel: ``sqrt(exp(-d^2 / width^2))`` (lime_image.LimeImageExplainer)."""
    return torch.exp(-(distances**2) / kernel_width**2).sqrt()


def ridge_fit(
    masks: Tensor, weights: Tensor, values: Tensor, alpha: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Weighted ridge regression per image, as scikit-learn's ``Ridge(alpha, fit_intercept=True)``
    with ``sample_weight``: the intercept is not penalised (weighted centring first).

    Args:
        masks: indicators ``[B, S, M]`` (bool or float).
        weights: sample weights ``[B, S]`` (>= 0).
        values: targets ``[B, S]``.
        alpha: the ridge penalty (lime's 1).

    Returns:
        ``coef`` float64 ``[B, M]`` and ``intercept`` float64 ``[B]``. A column that is zero in
        every row gets coefficient 0 and leaves the others unchanged.
    """
    x, w, y = masks.double(), weights.double(), values.double()
    total = w.sum(1, keepdim=True).clamp_min(1e-300)
    xbar = (w[..., None] * x).sum(1) / total  # [B, M]
    ybar = (w * y).sum(1, keepdim=True) / total  # [B, 1]
    xc, yc = x - xbar[:, None], y - ybar
    wx = w[..., None] * xc
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    a = xc.mT @ wx + alpha * eye
    rhs = (wx * yc[..., None]).sum(1)
    coef = torch.cholesky_solve(rhs[..., None], torch.linalg.cholesky(a))[..., 0]
    return coef, ybar[:, 0] - (xbar * coef).sum(1)


def kernel_shap_fit(
    masks: Tensor,
    weights: Tensor,
    values: Tensor,
    fx: Tensor,
    f0: Tensor,
    n_features: Tensor | None = None,
) -> Tensor:
    """Kernel SHAP's constrained weighted least squares per image, as ``shap.KernelExplainer``'s
    ``solve`` with ``l1_reg=False``: ``sum(phi) = f(x) - f(empty)`` is enforced by eliminating the
    last feature, the others solve the kernel-weighted normal equations.

    Args:
        masks: coalitions ``[B, S, M]`` (shap's ``maskMatrix``; bool or float).
        weights: Shapley-kernel weights ``[B, S]`` (shap's ``kernelWeights``; 0 = unused row).
        values: ``f(coalition)`` ``[B, S]`` (shap's ``ey``).
        fx: ``f(all features)`` ``[B]``; f0: ``f(no feature)`` ``[B]`` (shap's ``fx``, ``fnull``).
        n_features: features of each image ``[B]`` (columns past it are padding); None = all ``M``.

    Returns:
        ``phi`` float64 ``[B, M]``; 0 on padding. One feature gets ``fx - f0`` exactly. A singular
        system (fewer samples than features) gets the minimum-norm solution (shap: lstsq when
        numpy's solve raises; when rounding hides the singularity, shap's phi is meaningless).
    """
    v, fx, f0 = values.double(), fx.double(), f0.double()
    a, wx, z_last, free, last = _kernel_shap_system(masks, weights, n_features)
    y = v - f0[:, None] - z_last[..., 0] * (fx - f0)[:, None]
    rhs = (wx * y[..., None]).sum(1)
    sol = (torch.linalg.pinv(a, rtol=_RTOL, hermitian=True) @ rhs[..., None])[..., 0] * free
    rest = (fx - f0) - sol.sum(1)
    return sol.scatter(1, last[:, None], rest[:, None])


#: Relative cut-off of kernel SHAP's pseudo-inverse (and of its rank test).
_RTOL = 1e-12


def _kernel_shap_system(
    masks: Tensor, weights: Tensor, n_features: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Kernel SHAP's normal matrix ``[B, M, M]`` with the last feature eliminated (the fixed
    columns padded with a diagonal), ``W x``, the last feature's column, the unknowns ``[B, M]``
    and the index of each image's last feature."""
    z, w = masks.double(), weights.double()
    b, _, m = z.shape
    n = torch.full((b,), m, device=z.device) if n_features is None else n_features.long()
    last = (n - 1).clamp_min(0)
    z_last = z.gather(2, last[:, None, None].expand(b, z.shape[1], 1))  # [B, S, 1]
    free = torch.arange(m, device=z.device)[None] < last[:, None]  # [B, M]: the unknowns
    x = (z - z_last) * free[:, None]
    wx = w[..., None] * x
    a = x.mT @ wx
    # the fixed columns get a diagonal no larger than the largest eigenvalue of the unknowns' block,
    # so the pseudo-inverse's cut-off (relative to that eigenvalue) is that of the unpadded system
    scale = a.diagonal(dim1=1, dim2=2).amax(1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return a + torch.diag_embed((~free) * scale[:, None]), wx, z_last, free, last


def kernel_shap_underdetermined(
    masks: Tensor, weights: Tensor, n_features: Tensor | None = None
) -> Tensor:
    """True ``[B]`` where the sampled coalitions do not determine kernel SHAP's values (its
    constrained least squares has more than one solution: too few distinct coalitions for the
    image's superpixels; :func:`kernel_shap_fit` then returns the minimum-norm one)."""
    a = _kernel_shap_system(masks, weights, n_features)[0]
    return torch.linalg.matrix_rank(a, rtol=_RTOL, hermitian=True) < a.shape[-1]


def box_blur(images: Tensor, size: int) -> Tensor:
    """OpenCV's ``cv2.blur(x, (size, size))`` (what ``shap.maskers.Image('blur(k,k)')`` uses) of
    ``images`` ``[B, C, H, W]``: the mean over a ``size`` box anchored at ``size // 2``, borders
    reflected without repeating the edge (``BORDER_REFLECT_101``, periodic for boxes wider than
    the image)."""
    h, w = images.shape[-2:]
    lo, hi = size // 2, size - 1 - size // 2

    def reflect(n: int) -> Tensor:
        i = torch.arange(-lo, n + hi, device=images.device)
        if n == 1:
            return torch.zeros_like(i)
        i = i.remainder(2 * n - 2)
        return torch.where(i > n - 1, 2 * n - 2 - i, i)

    padded = images[..., reflect(h), :][..., reflect(w)]
    return F.avg_pool2d(padded.double(), size, stride=1).to(images.dtype)


# ------------------------------------------------------------------------------ samplers


def lime_coalitions(keys: Tensor, n_features: Tensor, n_samples: int) -> Tensor:
    """lime's samples ``[B, S, M]`` (bool, ``M = max(n_features)``): each feature on or off with
    probability 1/2 (lime: ``randint(0, 2)``), the first row all on (lime: ``data[0, :] = 1``);
    columns past an image's ``n_features`` are off. ``keys`` ``[B]``: per-image random keys."""
    m = int(n_features.max())
    j = torch.arange(m, device=keys.device)
    r = torch.arange(n_samples, device=keys.device)
    on = hash_uniform(keys[:, None, None], r[:, None] * STRIDE + j) < 0.5
    on[:, 0] = True
    return on & (j < n_features[:, None])[:, None]


@dataclass(frozen=True)
class ShapPlan:
    """``shap.KernelExplainer``'s sampling plan for ``m`` features and ``nsamples`` (its code, for one
    ``m``): the coalition sizes it enumerates in full and how it samples the rest.

    Attributes:
        rows: coalitions used (shap's nsamples, capped at ``2^m - 2``).
        fixed: the enumerated coalitions ``[F, m]`` in shap's order; fixed_weights: theirs ``[F]``.
        n_full: coalition sizes enumerated (with their complements).
        n_paired: sizes whose complement is a different size (drawn in pairs).
        size_probs: probabilities of the sizes ``n_full + 1, ...`` drawn at random.
        weight_left: the kernel weight the random rows share.
    """

    rows: int
    fixed: np.ndarray
    fixed_weights: np.ndarray
    n_full: int
    n_paired: int
    size_probs: np.ndarray
    weight_left: float


@lru_cache(maxsize=512)
def shap_plan(m: int, n_samples: int) -> ShapPlan:
    """The :class:`ShapPlan` of ``m`` features (shap/explainers/_kernel.py, ``explain``)."""
    if m < 2:
        return ShapPlan(0, np.zeros((0, m)), np.zeros(0), 0, 0, np.zeros(0), 0.0)
    rows = min(n_samples, 2**m - 2) if m <= 30 else n_samples
    n_sizes, n_paired = math.ceil((m - 1) / 2), (m - 1) // 2
    weight = np.array([(m - 1.0) / (i * (m - i)) for i in range(1, n_sizes + 1)])
    weight[:n_paired] *= 2
    weight /= weight.sum()
    fixed, fixed_w = [], []
    left, remaining, n_full = rows, weight.copy(), 0
    for size in range(1, n_sizes + 1):
        count = math.comb(m, size) * (2 if size <= n_paired else 1)
        if left * remaining[size - 1] / count < 1.0 - 1e-8:
            break
        n_full += 1
        left -= count
        if remaining[size - 1] < 1.0:
            remaining /= 1 - remaining[size - 1]
        w = weight[size - 1] / math.comb(m, size) / (2.0 if size <= n_paired else 1.0)
        for inds in itertools.combinations(range(m), size):
            row = np.zeros(m)
            row[list(inds)] = 1.0
            fixed.append(row)
            if size <= n_paired:
                fixed.append(1.0 - row)
        fixed_w += [w] * count
    probs = weight.copy()
    probs[:n_paired] /= 2
    probs = probs[n_full:]
    probs = probs / probs.sum() if len(probs) else probs
    return ShapPlan(
        rows=rows,
        fixed=np.array(fixed).reshape(-1, m),
        fixed_weights=np.array(fixed_w),
        n_full=n_full,
        n_paired=n_paired,
        size_probs=probs,
        weight_left=float(weight[n_full:].sum()),
    )


def kernel_shap_coalitions(
    keys: Tensor, n_features: Tensor, n_samples: int
) -> tuple[Tensor, Tensor, Tensor]:
    """shap's sampling scheme for each image, in batch: ``[B, R, M]`` coalitions, ``[B, R]`` kernel
    weights and ``[B, R]`` validity (``R = 2 + max rows``, ``M = max(n_features)``).

    Rows 0 and 1 are the full and the empty coalition (``f(x)``, ``f(empty)``; weight 0). Then, per
    :func:`shap_plan`: the enumerated small and large coalition sizes with their Shapley-kernel
    weights (exactly shap's rows and weights), then random coalitions: a size drawn from what is left
    of the kernel's size distribution, a uniform subset of that size, and its complement when that
    is a different size, until the image's rows are used; they share the weight left equally.
    Unlike shap, a coalition drawn twice is used twice (shap adds 1 to the first one's weight
    instead and draws again: the same regression, with fewer distinct rows here). With
    ``n_samples >= 2^M - 2`` every coalition is enumerated and the values are exact.
    """
    device = keys.device
    counts = n_features.tolist()
    b, m = len(counts), max(counts)
    plans = [shap_plan(c, n_samples) for c in counts]
    n_rows = torch.tensor([p.rows for p in plans], device=device)
    n_fixed = torch.tensor([len(p.fixed) for p in plans], device=device)
    r = 2 + int(n_rows.max())
    f = max(len(p.fixed) for p in plans)
    masks = torch.zeros(b, r, m, dtype=torch.bool, device=device)
    weights = torch.zeros(b, r, dtype=torch.float64, device=device)
    fixed = np.zeros((b, f, m), dtype=bool)
    fixed_w = np.zeros((b, f))
    for i, p in enumerate(plans):  # host metadata only: the plan of each count is cached
        fixed[i, : len(p.fixed), : counts[i]] = p.fixed > 0
        fixed_w[i, : len(p.fixed)] = p.fixed_weights
    feature = torch.arange(m, device=device)[None] < n_features[:, None]  # [B, M]
    masks[:, 0] = feature
    masks[:, 2 : 2 + f] = torch.from_numpy(fixed).to(device)
    weights[:, 2 : 2 + f] = torch.from_numpy(fixed_w).to(device)

    n_random = n_rows - n_fixed
    draws = int(n_random.max())
    if draws > 0:
        k = max(len(p.size_probs) for p in plans)
        cdf = np.ones((b, max(k, 1)))
        first = np.zeros(b, dtype=np.int64)
        paired = np.zeros(b, dtype=np.int64)
        for i, p in enumerate(plans):
            cdf[i, : len(p.size_probs)] = np.cumsum(p.size_probs)
            first[i], paired[i] = p.n_full + 1, p.n_paired
        cdf = torch.from_numpy(cdf).to(device)
        cdf[:, -1] = 1.0
        d = torch.arange(draws, device=device)
        u = hash_uniform(keys[:, None], d * STRIDE + STRIDE - 1).double()  # [B, D]
        pick = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[1] - 1)
        size = pick + torch.from_numpy(first).to(device)[:, None]  # [B, D]
        score = hash_uniform(
            keys[:, None, None], d[:, None] * STRIDE + torch.arange(m, device=device)
        )
        score = torch.where(feature[:, None], score, torch.full_like(score, 2.0))
        order = score.argsort(dim=-1, stable=True)
        rank = torch.empty_like(order).scatter_(
            -1, order, torch.arange(m, device=device).expand_as(order)
        )
        subset = rank < size[..., None]  # [B, D, M]
        pair = torch.stack([subset, ~subset & feature[:, None]], 2)  # [B, D, 2, M]
        used = torch.stack(
            [
                torch.ones_like(size, dtype=torch.bool),
                size <= torch.from_numpy(paired).to(device)[:, None],
            ],
            2,
        ).flatten(1)  # [B, 2D]
        position = used.cumsum(1) - 1
        used &= position < n_random[:, None]
        img, row = used.nonzero(as_tuple=True)
        slot = 2 + n_fixed[img] + position[img, row]
        masks[img, slot] = pair.flatten(1, 2)[img, row]
        share = torch.tensor([p.weight_left for p in plans], dtype=torch.float64, device=device)
        weights[img, slot] = (share / n_random.clamp_min(1))[img]
    valid = torch.arange(r, device=device)[None] < 2 + n_rows[:, None]
    return masks, weights, valid


# ------------------------------------------------------------------------------ methods


class _BatchedSurrogate(_Superpixel):
    """Superpixels, coalitions, one chunked forward over the batch, one batched solve per batch."""

    def __init__(
        self,
        n_samples: int,
        n_segments: int,
        compactness: float,
        slic_sigma: float,
        batch_size: int | str | None,
        seed: int,
    ) -> None:
        super().__init__(n_segments, compactness, slic_sigma)
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.batch_size = check_batch_size("batch_size", batch_size)
        self.seed = check_int("seed", seed)

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
            p = _probs(model, x).gather(1, targets[img][:, None])[:, 0]
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


class BatchedLime(_BatchedSurrogate):
    """LIME (Ribeiro et al., KDD 2016), the ``lime`` package's image estimator batched in torch.

    As :class:`bench.methods.perturbation.Lime` (lime's ``LimeImageExplainer`` defaults): SLIC
    superpixels, samples with each superpixel on or off with probability 1/2 and the first sample
    all on, weights ``sqrt(exp(-d^2 / kernel_width^2))`` of the cosine distance ``d`` to the all-on
    sample, and a weighted ``Ridge(alpha=1)`` with intercept on every superpixel (lime's
    ``feature_selection='auto'`` with its 100000 features keeps them all); off superpixels take
    ``hide_color``. Samples come from counter-based random numbers keyed by ``(seed, image
    content)``, not numpy's: the same estimator, other draws than the package.

    Args:
        n_samples: perturbed samples per image (lime's num_samples; its default 1000).
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see
            :func:`bench.methods.perturbation.superpixels`).
        kernel_width: lime's kernel width.
        hide_color: fill value in normalised space.
        batch_size: most perturbed images (over all images of the batch) per forward pass;
            ``auto`` = 64 on a CPU, 1024 on a GPU (:func:`bench.core.context.auto_chunk`).
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
        super().__init__(n_samples, n_segments, compactness, slic_sigma, batch_size, seed)
        self.kernel_width = check_number("kernel_width", kernel_width, above=0)
        self.hide_color = check_number("hide_color", hide_color)

    def fill_images(self, images: Tensor) -> Tensor:
        return torch.full_like(images, self.hide_color)

    def coalitions(self, keys: Tensor, n_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        masks = lime_coalitions(keys, n_features, self.n_samples)
        weights = lime_kernel(cosine_distance_to_ones(masks, n_features), self.kernel_width)
        return masks, weights, torch.ones_like(masks[..., 0])

    def fit(self, masks: Tensor, weights: Tensor, values: Tensor, n_features: Tensor) -> Tensor:
        return ridge_fit(masks, weights, values, alpha=1.0)[0]


#: The fills :class:`BatchedKernelShap` reproduces on the device (shap's masker, ``blur(k,k)``).
BATCHED_FILLS = ("blur",)


class BatchedKernelShap(_BatchedSurrogate):
    """Kernel SHAP (Lundberg & Lee, NeurIPS 2017), ``shap.KernelExplainer`` batched in torch.

    As :class:`bench.methods.perturbation.KernelShap`: SLIC superpixels are the players, an absent one
    shows a ``blur_size`` box blur of the image (shap's ``maskers.Image('blur(k,k)')``, i.e.
    ``cv2.blur``, see :func:`box_blur`), value = softmax probability of the target, and
    ``l1_reg=False``: the Shapley-kernel weighted least squares under the efficiency constraint
    (:func:`kernel_shap_fit`). Coalitions follow shap's plan (:func:`kernel_shap_coalitions`:
    enumerated small/large sizes, then random ones) from counter-based random numbers keyed by
    ``(seed, image content)``. An image with one superpixel gets ``f(x) - f(blurred)`` exactly.

    Args:
        n_samples: coalitions per image (shap's nsamples; capped at ``2^M - 2``).
        n_segments: SLIC's target number of superpixels.
        compactness: SLIC's compactness.
        slic_sigma: SLIC's Gaussian pre-smoothing (pixels; 0 = none, see
            :func:`bench.methods.perturbation.superpixels`).
        fill: ``blur`` only (the package wrapper's inpainting fills are not batched).
        blur_size: side of the box blur.
        batch_size: most coalition images (over all images of the batch) per forward pass;
            ``auto`` = 64 on a CPU, 1024 on a GPU (:func:`bench.core.context.auto_chunk`).
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
        super().__init__(n_samples, n_segments, compactness, slic_sigma, batch_size, seed)
        self.fill = check_choice("fill", fill, BATCHED_FILLS)
        self.blur_size = check_int("blur_size", blur_size, minimum=1)

    def fill_images(self, images: Tensor) -> Tensor:
        return box_blur(images, self.blur_size)

    def coalitions(self, keys: Tensor, n_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return kernel_shap_coalitions(keys, n_features, self.n_samples)

    def fit(self, masks: Tensor, weights: Tensor, values: Tensor, n_features: Tensor) -> Tensor:
        loose = kernel_shap_underdetermined(masks[:, 2:], weights[:, 2:], n_features)
        if bool(loose.any()) and not getattr(self, "_warned", False):
            self._warned = True  # once per run: the same settings give the same shortfall
            warnings.warn(
                f"{self.name}: n_samples={self.n_samples} coalitions do not determine the "
                f"Shapley values of {int(loose.sum())} of {len(loose)} images (up to "
                f"{int(n_features[loose].max())} superpixels); their maps are the minimum-norm "
                "solution. Raise n_samples (at least twice the superpixels) or lower n_segments.",
                stacklevel=2,
            )
        return kernel_shap_fit(
            masks[:, 2:], weights[:, 2:], values[:, 2:], values[:, 0], values[:, 1], n_features
        )
