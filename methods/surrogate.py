"""LIME's and kernel SHAP's estimators in torch, batched over images: the samplers and the solvers.

The math of :class:`bench.methods.superpixel.BatchedLime` and
:class:`bench.methods.superpixel.BatchedKernelShap` (which send the perturbed images through the
model), kept apart so each piece can be checked against the ``lime`` / ``shap`` package on its own:
(a) samplers of coalitions ``[B, S, M]`` (bool, one row per perturbed sample, one column per
superpixel; :func:`lime_coalitions`, :func:`kernel_shap_coalitions` after shap's
:func:`shap_plan`), drawn from counter-based random numbers keyed by per-image keys
(:func:`bench.core.rng.hash_uniform`), so an image's samples never depend on the batch it is in;
(b) the batched float64 solve of each image's surrogate (:func:`ridge_fit` with lime's
:func:`lime_kernel`, :func:`kernel_shap_fit` and its :func:`kernel_shap_underdetermined` check),
which given the package's own samples returns the package's coefficients; (c) shap's blur fill
(:func:`box_blur`). Images of a batch may have different numbers of superpixels ``M_i``: columns
past an image's ``M_i`` are zero (and get coefficient 0), rows an image does not use have weight 0.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.rng import hash_uniform

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
