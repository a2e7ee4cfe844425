"""ROAD (Rong et al., ICML 2022): remove pixels by noisy linear imputation and watch the accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import ConfigError, check_choice, check_int, check_number
from bench.core.ranking import descending_order, ranks_of
from bench.core.rng import counter_normal, counter_normal_at, id_keys
from bench.metrics.base import Category, Metric, MetricOutput, OrderCurves, OrderGap, Stability
from bench.metrics.faithfulness import TARGETS, explained_targets

#: Weights of the 8 neighbours in ROAD's linear imputation: 1/6 edge, 1/12 diagonal (sum 1).
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
ORDER_IDS = {"morf": 0, "lerf": 1}
SOLVER_DTYPES = {"float64": torch.float64, "float32": torch.float32}

#: Offsets ``(dy, dx)`` of a 3x3 stencil, row-major (index 4 is the centre).
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
#: Coarsen while a grid has more points than this; the coarsest grid is solved densely (Cholesky).
_COARSEST = 64
#: Damping of the Jacobi smoother on the image's level and on the coarse ones. On the image's
#: operator the eigenvalues of ``D^-1 A`` lie in (0, 2) (Gershgorin; 2 is excluded because the
#: 8-neighbour graph has triangles) and reach ~1.5, so 1.0 is a contraction; on the Galerkin
#: coarse levels they reach ~1.7, hence 0.8. Either way the V-cycle stays SPD.
_JACOBI_WEIGHT = (1.0, 0.8)
#: Stencils on grids of at most this many values (all systems and channels) are applied through
#: one strided view, and grid transfers from fine grids of at most this many values are two small
#: matrix products: on a CPU at ROAD's sizes both beat the per-offset slices below ~2^16 values.
_VIEW_APPLY = 1 << 16
_MATMUL_TRANSFER = 1 << 16
#: On a CPU, systems are solved in blocks of about this many values per vector: large enough to
#: spread each op's dispatch over several masks, small enough to stay in cache (measured on a
#: 2-core EPYC: 3 masks of 3x224x224 ~15% faster than 1 or 7; 13 of 3x112x112 ~20% faster than
#: 6 or 27); on other devices, all at once.
_CPU_BLOCK = 1 << 19


def _binomial(v: Tensor) -> Tensor:
    """``v`` filtered by ``[1, 2, 1]`` along both image axes, zero outside: ``[n, C, H, W]``.

    Shifted in-place additions, no padded copies (each op on a CPU costs about as much as its
    dispatch at these sizes, so the fewer the better).
    """
    t = v * 2.0
    t[..., 1:, :] += v[..., :-1, :]
    t[..., :-1, :] += v[..., 1:, :]
    out = t * 2.0
    out[..., 1:] += t[..., :-1]
    out[..., :-1] += t[..., 1:]
    return out


def _neighbour_sum(v: Tensor) -> Tensor:
    """Weighted sum ``[n, C, H, W]`` of each pixel's 8 neighbours (zero outside the image).

    The weights are ``([1, 2, 1] x [1, 2, 1] - 4 delta) / 12``: a separable filter, so four shifted
    slices instead of eight (fast in float64 on a CPU, where depthwise ``conv2d`` is slow).
    """
    return _binomial(v).sub_(v, alpha=4.0).div_(12.0)


def _stencil_apply(stencil: Tensor, v: Tensor) -> Tensor:
    """``sum_d stencil[:, d] * v[. + d]``: per-point 3x3 stencils ``[n, 9, h, w]`` on ``v`` ``[n, C, h, w]``.

    The entries towards points outside the grid are zero. A large grid updates, per offset, only
    the slice whose neighbours exist (no padded copy); a small one (``<= _VIEW_APPLY`` values,
    where each op costs about its dispatch) multiplies one strided 3x3 view of the zero-padded
    ``v`` and sums: 4 ops instead of ~40.
    """
    n, c, h, w = v.shape
    if v.numel() <= _VIEW_APPLY:
        padded = F.pad(v, (1, 1, 1, 1))
        s = padded.stride()
        view = padded.as_strided((n, c, 3, 3, h, w), (s[0], s[1], s[2], s[3], s[2], s[3]))
        return (view.reshape(n, c, 9, h, w) * stencil[:, None]).sum(2)
    out = stencil[:, 4:5] * v
    for k, (dy, dx) in enumerate(_OFFSETS):
        if k != 4:
            ys, yn = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
            xs, xn = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
            out[..., ys, xs].addcmul_(stencil[:, k : k + 1, ys, xs], v[..., yn, xn])
    return out


def _interpolation(n: int, nc: int, like: Tensor) -> Tensor:
    """The 1-D factor ``[n, nc]`` of :func:`_prolong` (bilinear; a last odd point copies)."""
    i = torch.arange(n, device=like.device)
    lo, hi = (i // 2).clamp(max=nc - 1), ((i + 1) // 2).clamp(max=nc - 1)
    out = torch.zeros(n, nc, dtype=like.dtype, device=like.device)
    out[i, lo] += 0.5
    out[i, hi] += 0.5
    return out


def _prolong(c: Tensor, h: int, w: int) -> Tensor:
    """Bilinear interpolation from a coarse grid (the fine grid's even points) to ``h x w``.

    A last odd fine row/column (even ``h``/``w``) copies the last coarse one, so that constants
    are interpolated exactly up to the image's edge, where the operator has a natural boundary
    (this alone halves the iterations on regions that touch the edge).
    """
    hc, wc = c.shape[-2:]
    rows = c.new_empty(*c.shape[:-2], hc, 2, wc)
    rows[..., 0, :] = c
    rows[..., -1, 1, :] = c[..., -1, :]
    torch.add(c[..., :-1, :], c[..., 1:, :], out=rows[..., :-1, 1, :]).mul_(0.5)
    c = rows.view(*c.shape[:-2], 2 * hc, wc)[..., :h, :]
    out = c.new_empty(*c.shape[:-1], wc, 2)
    out[..., 0] = c
    out[..., -1, 1] = c[..., -1]
    torch.add(c[..., :-1], c[..., 1:], out=out[..., :-1, 1]).mul_(0.5)
    return out.view(*c.shape[:-1], 2 * wc)[..., :w]


def _restrict(f: Tensor, hc: int, wc: int) -> Tensor:
    """The transpose of :func:`_prolong`, from ``h x w`` to ``hc x wc``."""
    h, w = f.shape[-2:]
    odd = f[..., 1::2, :]
    t = f[..., 0::2, :].clone()
    t[..., : odd.shape[-2], :].add_(odd, alpha=0.5)
    t[..., 1:, :].add_(odd[..., : hc - 1, :], alpha=0.5)
    if h == 2 * hc:  # the copied last row
        t[..., -1, :].add_(odd[..., -1, :], alpha=0.5)
    odd = t[..., 1::2]
    out = t[..., 0::2].clone()
    out[..., : odd.shape[-1]].add_(odd, alpha=0.5)
    out[..., 1:].add_(odd[..., : wc - 1], alpha=0.5)
    if w == 2 * wc:
        out[..., -1].add_(odd[..., -1], alpha=0.5)
    return out


class _Multigrid:
    """A geometric multigrid V-cycle for the masked 8-neighbour systems, batched over systems.

    Level 0 is the imputation operator on the removed pixels (the known ones are Dirichlet data,
    already in the right-hand side). Level ``l + 1`` lives on the even points of level ``l`` that
    are unknowns there; prolongation ``P`` is bilinear interpolation restricted to the unknowns of
    both levels, restriction is ``P^T`` and the coarse operator is Galerkin's ``P^T A P``, a
    per-point 3x3 stencil obtained with 9 probes. Every level is thus the exact variational coarse
    problem of an SPD matrix (the injected point keeps ``P``'s columns independent), whatever the
    mask. Smoothing: damped Jacobi, as many sweeps after as before, so the cycle is a symmetric
    positive definite preconditioner for conjugate gradients. The coarsest grid is solved by
    Cholesky. All systems (and channels, which share a mask) go through each step together.
    """

    def __init__(self, mask: Tensor, border: Tensor, sweeps: int = 1) -> None:
        self.sweeps = sweeps
        self.masks = [mask]  # [n, 1, h, w], 1 on unknowns
        self.stencils: list[Tensor | None] = [None]  # level 0 applies its operator matrix-free
        # level 0: A v = mask * (border * v - N(v)) = diag * v - mask / 12 * binomial(v)
        self.diag0 = mask * (border + 1.0 / 3.0)
        self.sep0 = mask / 12.0
        self.border = border
        self._transfers: dict[int, tuple[Tensor, Tensor]] = {}
        while self.masks[-1].shape[-2] * self.masks[-1].shape[-1] > _COARSEST:
            self.masks.append(self.masks[-1][..., ::2, ::2])
            self.stencils.append(self._galerkin(len(self.masks) - 2))
        self.inv_diag = []
        for lev, m in enumerate(self.masks):
            stencil = self.stencils[lev]
            diag = m * border if stencil is None else stencil[:, 4:5]
            self.inv_diag.append(
                torch.where(
                    m > 0, _JACOBI_WEIGHT[min(lev, 1)] / torch.where(diag > 0, diag, 1.0), 0.0
                )
            )
        self.post0 = self.inv_diag[0] * self.sep0
        # factorised in float64: a coarse matrix can be nearly singular (a few kept pixels, far away)
        mat = self._dense(len(self.masks) - 1).double()
        chol, info = torch.linalg.cholesky_ex(mat)
        if bool((info > 0).any()):  # no kept pixel at all (singular) or rounding: shift, still SPD
            shift = 1e-6 * mat.diagonal(dim1=1, dim2=2).amax(1)[:, None, None]
            chol = torch.linalg.cholesky(
                mat + shift * torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)
            )
        self.chol = chol.to(mask.dtype)

    def apply(self, lev: int, v: Tensor) -> Tensor:
        """The level's operator on ``v`` (zero off its unknowns); zero off its unknowns."""
        stencil = self.stencils[lev]
        if stencil is None:
            return torch.addcmul(self.diag0 * v, self.sep0, _binomial(v), value=-1.0)
        return _stencil_apply(stencil, v)

    def _factors(self, lev: int) -> tuple[Tensor, Tensor]:
        """The 1-D interpolation factors ``[h, hc]`` and ``[w, wc]`` from level ``lev + 1`` to ``lev``."""
        if lev not in self._transfers:
            (h, w), (hc, wc) = self.masks[lev].shape[-2:], self.masks[lev + 1].shape[-2:]
            m = self.masks[lev]
            self._transfers[lev] = (_interpolation(h, hc, m), _interpolation(w, wc, m))
        return self._transfers[lev]

    def prolong(self, lev: int, c: Tensor) -> Tensor:
        """From level ``lev + 1`` to level ``lev``."""
        m = self.masks[lev]
        h, w = m.shape[-2:]
        if c.shape[0] * c.shape[1] * h * w <= _MATMUL_TRANSFER:  # the same sums, in 3 ops
            py, px = self._factors(lev)
            return torch.matmul(py, torch.matmul(c, px.T)).mul_(m)
        return _prolong(c, h, w).mul_(m)

    def restrict(self, lev: int, f: Tensor) -> Tensor:
        """From level ``lev`` to level ``lev + 1``."""
        m = self.masks[lev + 1]
        if f.numel() <= _MATMUL_TRANSFER:
            py, px = self._factors(lev)
            return torch.matmul(py.T, torch.matmul(f, px)).mul_(m)
        return _restrict(f, m.shape[-2], m.shape[-1]).mul_(m)

    def _galerkin(self, lev: int) -> Tensor:
        """``P^T A P`` from level ``lev`` as per-point stencils ``[n, 9, hc, wc]``, by 9 probes.

        Probe ``(a, b)`` is 1 on the coarse unknowns with ``I % 3 == a`` and ``J % 3 == b``: each coarse
        point has exactly one such point among its 3x3 neighbours and ``P^T A P`` couples no
        further, so the probe's image at ``K`` is the stencil entry of ``K`` towards that point.
        """
        cmask = self.masks[lev + 1]
        hc, wc = cmask.shape[-2:]
        ii = torch.arange(hc, device=cmask.device)[:, None]
        jj = torch.arange(wc, device=cmask.device)[None, :]
        ab = torch.arange(9, device=cmask.device)[:, None, None]  # probe a * 3 + b
        probes = (ii % 3 * 3 + jj % 3) == ab
        index = (ab // 3 - ii + 1) % 3 * 3 + (ab % 3 - jj + 1) % 3  # offset towards it, in _OFFSETS
        e = cmask * probes.to(cmask.dtype)
        y = self.restrict(lev, self.apply(lev, self.prolong(lev, e)))
        return torch.zeros_like(y).scatter_(1, index.expand_as(y), y)

    def _stencil(self, lev: int) -> Tensor:
        """The level's operator as per-point stencils ``[n, 9, h, w]``."""
        stencil = self.stencils[lev]
        if stencil is not None:
            return stencil
        mask = self.masks[lev]
        h, w = mask.shape[-2:]
        padded = F.pad(mask, (1, 1, 1, 1))
        out = [
            self.border * mask
            if (dy, dx) == (0, 0)
            else -NEIGHBOUR_WEIGHTS[1 + dy][1 + dx]
            * mask
            * padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            for dy, dx in _OFFSETS
        ]
        return torch.cat(out, 1)

    def _dense(self, lev: int) -> Tensor:
        """The level's operator as matrices ``[n, N, N]``, with identity rows off its unknowns."""
        mask, stencil = self.masks[lev], self._stencil(lev)
        n, _, h, w = mask.shape
        ii = torch.arange(h, device=mask.device)[:, None].expand(h, w)
        jj = torch.arange(w, device=mask.device)[None, :].expand(h, w)
        mat = torch.diag_embed(1.0 - mask.flatten(1))
        for k, (dy, dx) in enumerate(_OFFSETS):
            ok = (ii + dy >= 0) & (ii + dy < h) & (jj + dx >= 0) & (jj + dx < w)
            mat[:, (ii * w + jj)[ok], ((ii + dy) * w + jj + dx)[ok]] += stencil[:, k][:, ok]
        return mat

    def solve_coarsest(self, r: Tensor) -> Tensor:
        n, c, h, w = r.shape
        x = torch.cholesky_solve(r.flatten(2).transpose(1, 2), self.chol)
        return x.transpose(1, 2).reshape(n, c, h, w)

    def __call__(self, r: Tensor, lev: int = 0) -> Tensor:
        """One V-cycle from zero on ``A x = r`` at level ``lev``: an SPD approximation of ``A^-1 r``.

        ``r`` is zero off the level's unknowns (as every residual of the solver is).
        """
        if lev == len(self.masks) - 1:
            return self.solve_coarsest(r)
        inv_diag = self.inv_diag[lev]
        if lev == 0 and self.sweeps == 1 and _JACOBI_WEIGHT[0] == 1.0:
            # The same cycle in fewer passes. With ``D = mask * border`` the operator's diagonal
            # and ``x``, ``r`` zero off the unknowns, ``A v = D v - mask * N(v)`` where
            # ``12 N(v) = binomial(v) - 4 v``: so ``r - A D^-1 r = sep0 * (binomial(x0) - 4 x0)``
            # and the post-smoothing ``x + D^-1 (r - A x) = x0 + D^-1 sep0 * (binomial(x) - 4 x)``.
            x0 = inv_diag * r
            res = _binomial(x0).sub_(x0, alpha=4.0).mul_(self.sep0)
            x = self.prolong(0, self(self.restrict(0, res), 1)).add_(x0)
            return torch.addcmul(x0, self.post0, _binomial(x).sub_(x, alpha=4.0))
        x = inv_diag * r
        for _ in range(self.sweeps - 1):
            x.addcmul_(inv_diag, r - self.apply(lev, x))
        x += self.prolong(lev, self(self.restrict(lev, r - self.apply(lev, x)), lev + 1))
        for _ in range(self.sweeps):
            x.addcmul_(inv_diag, r - self.apply(lev, x))
        return x


#: Iterations between two convergence checks on an accelerator when ``check_every`` is not given
#: (each check is a host-device sync; on a CPU it is free, so there every iteration is checked).
_DEVICE_CHECK_EVERY = 8

#: Reduction of the residual asked of each low-precision inner solve of the refinement.
_INNER_TOL = 1e-5


def _pcg(
    mg: _Multigrid, rhs: Tensor, tol: Tensor, max_iter: int, check_every: int
) -> tuple[Tensor, int]:
    """Multigrid-preconditioned CG from zero on ``mg``'s level-0 systems until ``max|r| <= tol``.

    Every tensor is in ``mg``'s precision. Each iteration freezes, on the device, the systems whose
    residual is small enough (their steps become zero), so the result does not depend on
    ``check_every``: that only sets how often the loop asks whether all are frozen (a device
    sync). The residual is tested before the next V-cycle, so the last one is never wasted.
    Returns the solution and the iterations done.
    """

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum((2, 3), keepdim=True)

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    active = r.abs().amax((2, 3), keepdim=True) > tol
    if max_iter <= 0 or not bool(active.any()):
        return x, 0
    z = mg(r)
    p = z
    rz = dot(r, z)
    it = 0
    while it < max_iter:
        it += 1
        ap = mg.apply(0, p)
        pap = dot(p, ap)
        alpha = torch.where(active & (pap > 0), rz / pap, 0.0)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        active &= r.abs().amax((2, 3), keepdim=True) > tol
        if it == max_iter or (it % check_every == 0 and not bool(active.any())):
            break
        z = mg(r)
        rz_new = dot(r, z)
        beta = torch.where(active & (rz > 0), rz_new / rz, 0.0)
        p = torch.addcmul(z, beta, p)
        rz = rz_new
    return x, it


def _solve(y: Tensor, removed: Tensor, tol: float, max_iter: int, check_every: int) -> Tensor:
    """Solve one block of systems; see :func:`impute_linear`.

    Mixed-precision iterative refinement: the residual and the solution are kept in ``y.dtype``;
    each correction is solved in float32 by multigrid-preconditioned CG to ``_INNER_TOL`` of the
    current residual (float32's rounding stays far below that), so float64 costs only a residual
    per round (2-3 rounds to 1e-7) and everything else moves half the bytes.
    """
    low = torch.float32
    mask = removed[:, None].to(y.dtype)
    known = 1.0 - mask
    border = _neighbour_sum(torch.ones_like(y[:1, :1]))
    rhs = mask * _neighbour_sum(y * known)
    mg = _Multigrid(mask.to(low), border.to(low))
    limit = max(tol, 4 * torch.finfo(y.dtype).eps) * rhs.abs().amax((2, 3), keepdim=True)
    x = mask * (y * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp(min=1)
    if y.dtype == low:
        return torch.where(
            removed[:, None], x + _pcg(mg, rhs - mg.apply(0, x), limit, max_iter, check_every)[0], y
        )
    diag, sep = (
        mask * (border + 1.0 / 3.0),
        mask / 12.0,
    )  # the operator in y.dtype, as _Multigrid.apply
    while True:
        r = rhs - torch.addcmul(diag * x, sep, _binomial(x), value=-1.0)
        r_max = r.abs().amax((2, 3), keepdim=True)
        active = r_max > limit
        if max_iter <= 0 or not bool(active.any()):
            break
        r_low = torch.where(active, r, 0.0).to(low)
        inner_tol = torch.maximum(_INNER_TOL * r_max, 0.5 * limit).to(low)
        d, used = _pcg(mg, r_low, inner_tol, max_iter, check_every)
        x += d.to(y.dtype)
        max_iter -= max(used, 1)
    return torch.where(removed[:, None], x, y)


@torch.no_grad()
def impute_linear(
    images: Tensor,
    removed: Tensor,
    tol: float = 1e-7,
    max_iter: int = 20000,
    check_every: int = 1,
    dtype: torch.dtype = torch.float64,
    block: int | None = None,
) -> Tensor:
    """ROAD's linear imputation: each removed pixel = weighted mean of its 8 neighbours, solved jointly.

    Every removed pixel satisfies ``s_i x_i - sum_j w_ij x_j = 0`` over its in-image neighbours
    (``w`` = 1/6 edge, 1/12 diagonal; ``s_i = sum_j w_ij`` renormalises at the border). The system
    of every (image, channel) is symmetric positive definite whenever some pixel is kept. They
    are solved together on the input's device by conjugate gradients preconditioned with a
    geometric multigrid V-cycle (:class:`_Multigrid`): ~8-10 V-cycles whatever the size and
    shape of the removed region (90% in one blob or scattered), where plain CG needs hundreds to
    thousands. With float64 (default) the multigrid-CG runs in float32 inside a float64 iterative
    refinement (:func:`_solve`). A system stops (is frozen) once its largest float64 residual is
    ``<= tol`` times its right-hand side's largest entry; at the default 1e-7 the result matches an
    exact sparse solve to < 1e-6 (tests: 112 px, 90% in one blob, scattered 50-99%). With
    ``dtype=float32`` everything is float32 and errors reach ~1e-3 on large regions.

    Args:
        images: float ``[n, C, H, W]`` (ROAD imputes in [0, 1] pixel space).
        removed: bool ``[n, H, W]``, True where the pixel is to be imputed.
        tol: the largest residual accepted, relative to the right-hand side's largest entry.
        max_iter: the most CG iterations (over all refinement rounds).
        check_every: iterations between two asks whether every system has converged (each a
            host-device sync). The result does not depend on it: a system is frozen, on the
            device, at the first iteration its residual is small enough.
        dtype: the solver's precision.
        block: systems solved together; default: all on an accelerator, on a CPU as many as keep
            a vector within ``_CPU_BLOCK`` values (3 masks of 3x224x224, 13 of 3x112x112:
            large enough to spread each op's dispatch, small enough to stay in cache).

    Returns:
        ``images`` with removed pixels replaced, ``[n, C, H, W]`` in ``images.dtype`` (no noise added).
    """
    n = images.shape[0]
    if block is None:
        block = (
            n if images.device.type != "cpu" else max(1, _CPU_BLOCK // max(1, images[0].numel()))
        )
    y = images.to(dtype)
    out = [
        _solve(y[i : i + block], removed[i : i + block], tol, max_iter, check_every)
        for i in range(0, n, block)
    ]
    return torch.cat(out).to(images.dtype) if out else images.clone()


def image_keys(ids: Sequence[str], device: torch.device | str) -> Tensor:
    """The int64 key ``[B]`` of each image id that seeds its noise: :func:`bench.core.rng.id_keys`.

    The same CRC-32 values (so the same noise and scores as before), hashed once per batch on the
    host, where the ids are; to an accelerator they travel from pinned memory without blocking
    the host (a plain copy would wait for the device's queue). An image's key depends on its id
    only, never on the batch it is in.
    """
    keys = id_keys(ids, "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        return keys.pin_memory().to(device, non_blocking=True)
    return keys.to(device)


def fraction_counts(fractions: Sequence[float], n: int) -> list[int]:
    """``floor(p * n)`` for each fraction, exact for fractions with up to 6 decimals."""
    return [round(p * 1_000_000) * n // 1_000_000 for p in fractions]


class _Road(Metric):
    """Shared engine of ROAD's MoRF / LeRF curves.

    Protocol (docs/PROTOCOLS.md §2): ranking = map min-max scaled + ``tie_noise`` * N(0, 1); for each
    fraction ``p`` the ``floor(p * N)`` most (MoRF) or least (LeRF) relevant pixels are removed,
    imputed by noisy linear imputation in [0, 1] pixel space (``x * std + mean``), N(0, ``noise``²)
    added to the imputed pixels only, then normalised again for the unchanged model. Scores:
    the mean over fractions of the 0/1 correctness of the top-1 prediction against ``target``
    (the accuracy curve's mean) and, under ``.probability``, of the target's softmax probability.
    LeRF removes the least relevant ``p`` (the reference code keeps ``p`` there) and the
    probability is that of the target (the reference returns class 0's).
    Noise comes from a counter-based generator keyed by (seed, image id, order, fraction), so it
    does not depend on batch or chunk size; a score does only through rounding (the solver's
    blocks and the model's batches order their sums by their size: ~1e-7; docs/PROTOCOLS.md,
    "What every metric shares" and §2). ``check_every`` (solver iterations between two
    convergence checks; None: 1 on a CPU, ``_DEVICE_CHECK_EVERY`` on an accelerator) changes
    only the speed, never a score.
    """

    category = Category.FAITHFULNESS
    stability = Stability.RANKING  # the pixel order (and the solver's tolerance)
    citation = (
        "Rong, Leemann, Borisov, Kasneci, Kasneci. A Consistent and Efficient Evaluation Strategy "
        "for Attribution Methods. ICML 2022."
    )
    orders: tuple[str, ...] = ()
    suffixes = {"probability": None}
    # accuracy of the top-1 prediction and the target's softmax: a one-label-per-image protocol
    heads = frozenset({"softmax"})

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        fractions: Sequence[float] = FRACTIONS,
        noise: float = 0.01,
        tie_noise: float = 1e-4,
        target: str = "label",
        tol: float = 1e-7,
        max_iter: int = 20000,
        solver_dtype: str = "float64",
        check_every: int | None = None,
    ) -> None:
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.fractions = [float(p) for p in fractions]
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError(
                f"mean={self.mean} and std={self.std} must be per-channel lists of one length."
            )
        if any(v <= 0 for v in self.std):
            raise ConfigError(f"std={self.std} is not valid; accepted: positive values.")
        if not self.fractions or any(not 0.0 < p < 1.0 for p in self.fractions):
            raise ConfigError(
                f"fractions={self.fractions} is not valid; accepted: values in (0, 1)."
            )
        self.noise = check_number("noise", noise, minimum=0)
        self.tie_noise = check_number("tie_noise", tie_noise, minimum=0)
        self.target = check_choice("target", target, TARGETS)
        self.solver_dtype = check_choice("solver_dtype", solver_dtype, SOLVER_DTYPES)
        self.tol = check_number("tol", tol, above=0)
        self.max_iter = check_int("max_iter", max_iter, minimum=1)
        self.check_every = (
            None if check_every is None else check_int("check_every", check_every, minimum=1)
        )

    def ranks(
        self,
        ctx: Context,
        batch: Batch,
        maps: Tensor,
        keys: Tensor | None = None,
        orders: Sequence[str] | None = None,
    ) -> Tensor:
        """Rank ``[B, len(orders), N]`` of each pixel under each order (0 = removed first).

        ``keys``: the images' keys (:func:`image_keys`), computed here when not given; ``orders``:
        default the metric's.
        """
        flat = maps.flatten(1).float()
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        scaled = (flat - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        if keys is None:
            keys = image_keys(batch.ids, flat.device)
        ranking = scaled + self.tie_noise * counter_normal(
            ctx.seed, keys, torch.zeros_like(keys), flat.shape[1]
        )
        n = flat.shape[1]
        morf = ranks_of(descending_order(ranking))
        out = [morf if o == "morf" else n - 1 - morf for o in (orders or self.orders)]
        return torch.stack(out, 1)

    def curves(self, ctx: Context, batch: Batch, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Correctness and target probability, each ``[B, len(orders), len(fractions)]``.

        An order already computed for this batch and maps by a ROAD metric with the same settings
        in the job (``road_abc`` beside ``road_morf``) is reused, not imputed again: its noise is
        keyed by (seed, image, order, fraction), so it would come out the same up to rounding
        (computed afresh, the model would see the order in other batches).
        """
        settings = (
            tuple(self.mean),
            tuple(self.std),
            tuple(self.fractions),
            self.noise,
            self.tie_noise,
            self.target,
            self.tol,
            self.max_iter,
            self.solver_dtype,
            ctx.seed,
        )
        out = _CURVES.get(
            ctx, batch, maps, settings, self.orders, lambda o: self._curves(ctx, batch, maps, o)
        )
        return out[..., 0], out[..., 1]

    @torch.no_grad()  # inputs that require grad would otherwise record every solver step
    def _curves(self, ctx: Context, batch: Batch, maps: Tensor, orders: tuple[str, ...]) -> Tensor:
        """Correctness and probability ``[B, len(orders), len(fractions), 2]`` under ``orders``."""
        x = batch.images
        b, c, h, w = x.shape
        if len(self.mean) != c:
            raise ConfigError(
                f"{type(self).__name__}: mean/std have {len(self.mean)} channels, images {c}."
            )
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, c, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, c, 1, 1)
        pixels = x * std + mean
        keys = image_keys(batch.ids, x.device)
        rank = self.ranks(ctx, batch, maps, keys, orders)
        check_every = self.check_every or (1 if x.device.type == "cpu" else _DEVICE_CHECK_EVERY)
        targets = explained_targets(ctx, batch, self.target)
        r_len, p_len = len(orders), len(self.fractions)
        counts = torch.tensor(fraction_counts(self.fractions, h * w), device=x.device)
        order_ids = torch.tensor([ORDER_IDS[o] for o in orders], device=x.device)
        per_image = r_len * p_len

        def make(sl: slice) -> Tensor:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            bi, ri, pi = k // per_image, (k // p_len) % r_len, k % p_len
            removed = (rank[bi, ri] < counts[pi, None]).view(-1, h, w)
            filled = impute_linear(
                pixels[bi],
                removed,
                self.tol,
                self.max_iter,
                check_every,
                dtype=SOLVER_DTYPES[self.solver_dtype],
            )
            if self.noise:  # noise on the imputed pixels only, drawn only there
                stream = 1 + order_ids[ri] * 1024 + pi
                rows, cols = (
                    removed[:, None]
                    .expand(-1, c, -1, -1)
                    .reshape(len(k), -1)
                    .nonzero(as_tuple=True)
                )
                noise = counter_normal_at(ctx.seed, keys[bi], stream, c * h * w, rows, cols)
                filled = filled.reshape(len(k), -1).index_put(
                    (rows, cols), self.noise * noise, accumulate=True
                )
            return (filled.view(-1, c, h, w) - mean) / std

        def reduce(sl: slice, logits: Tensor) -> Tensor:
            t = targets[torch.arange(sl.start, sl.stop, device=x.device) // per_image]
            correct = (logits.argmax(1) == t).float()
            prob = logits.softmax(1).gather(1, t[:, None]).squeeze(1)
            return torch.stack([correct, prob], 1)

        return ctx.map_forward(b * per_image, make, reduce).view(b, r_len, p_len, 2)


#: The curves of the last batch, per order, shared by the ROAD metrics of a job.
_CURVES = OrderCurves()


class _RoadSingle(_Road):
    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        correct, prob = self.curves(ctx, batch, maps)
        return MetricOutput(
            scores={"": correct[:, 0].mean(1), "probability": prob[:, 0].mean(1)},
            curves={"": correct[:, 0], "probability": prob[:, 0]},
        )


class RoadMoRF(_RoadSingle):
    """ROAD, most relevant first: accuracy as the top ``p`` pixels are imputed; lower is better."""

    higher_is_better = False
    score_range = (0.0, 1.0)  # mean accuracy / probability over fractions
    orders = ("morf",)


class RoadLeRF(_RoadSingle):
    """ROAD, least relevant first: accuracy as the bottom ``p`` pixels are imputed; higher is better."""

    higher_is_better = True
    score_range = (0.0, 1.0)  # mean accuracy / probability over fractions
    orders = ("lerf",)


class RoadABC(OrderGap, _Road):
    """ROAD's gap between the curves: mean over fractions of LeRF minus MoRF accuracy; higher is better."""

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        correct, prob = self.curves(ctx, batch, maps)
        return MetricOutput(
            scores={
                "": (correct[:, 1] - correct[:, 0]).mean(1),
                "probability": (prob[:, 1] - prob[:, 0]).mean(1),
            },
            curves={
                "morf": correct[:, 0],
                "lerf": correct[:, 1],
                "morf.probability": prob[:, 0],
                "lerf.probability": prob[:, 1],
            },
        )
