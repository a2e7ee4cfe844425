"""ROAD (Rong et al., ICML 2022): remove pixels by noisy linear imputation and watch the accuracy."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.context import Context
from bench.data.base import Batch
from bench.errors import ConfigError
from metrics.base import Metric, MetricOutput
from metrics.faithfulness import TARGETS, check_choice, explained_targets

#: Weights of the 8 neighbours in ROAD's linear imputation: 1/6 edge, 1/12 diagonal (sum 1).
NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
ORDER_IDS = {"morf": 0, "lerf": 1}
SOLVER_DTYPES = {"float64": torch.float64, "float32": torch.float32}

# splitmix64 constants as signed int64 (torch integer arithmetic wraps around).
_GOLDEN = -7046029254386353131  # 0x9e3779b97f4a7c15
_M1 = -4658895280553007687  # 0xbf58476d1ce4e5b9
_M2 = -7723592293110705685  # 0x94d049bb133111eb


def _srl(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 ``x`` by ``k`` bits."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 tensors: a bijective, well-mixing hash."""
    x = (x ^ _srl(x, 30)) * _M1
    x = (x ^ _srl(x, 27)) * _M2
    return x ^ _srl(x, 31)


def counter_normal(seed: int, keys: Tensor, stream: Tensor, size: int) -> Tensor:
    """Standard normal noise ``[n, size]`` that is a pure function of ``(seed, keys[i], stream[i], j)``.

    A counter-based generator (splitmix64 hash + Box-Muller), so the noise an image receives does
    not depend on the batch it is in, the chunk size or the device.
    """
    state = _mix(keys * _GOLDEN + _mix(torch.full_like(keys, seed)))
    state = _mix(state + (stream + 1) * _GOLDEN)
    idx = torch.arange(1, 2 * size + 1, device=keys.device, dtype=torch.long)
    h = _mix(state[:, None] + idx[None] * _GOLDEN)
    u = (_srl(h, 40).float() + 0.5) * 2.0**-24  # 24 random bits -> (0, 1)
    u1, u2 = u[:, :size], u[:, size:]
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)


def image_keys(ids: Sequence[str], device: torch.device) -> Tensor:
    """A stable int64 key ``[B]`` per image id (CRC-32), to seed per-image noise."""
    return torch.tensor([zlib.crc32(str(i).encode()) for i in ids], dtype=torch.long, device=device)


def _neighbour_sum(v: Tensor) -> Tensor:
    """Weighted sum ``[n, C, H, W]`` of each pixel's 8 neighbours (zero outside the image).

    Eight shifted slices of a zero-padded copy: as fast as a depthwise convolution on a GPU and
    much faster on a CPU in float64, where depthwise ``conv2d`` takes a slow path.
    """
    h, w = v.shape[-2:]
    padded = F.pad(v, (1, 1, 1, 1))
    out = torch.zeros_like(v)
    for dy in range(3):
        for dx in range(3):
            weight = NEIGHBOUR_WEIGHTS[dy][dx]
            if weight:
                out = out + weight * padded[..., dy : dy + h, dx : dx + w]
    return out


def impute_linear(
    images: Tensor,
    removed: Tensor,
    tol: float = 1e-7,
    max_iter: int = 20000,
    check_every: int = 16,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """ROAD's linear imputation: each removed pixel = weighted mean of its 8 neighbours, solved jointly.

    Every removed pixel satisfies ``s_i x_i - sum_j w_ij x_j = 0`` over its in-image neighbours
    (``w`` = 1/6 edge, 1/12 diagonal; ``s_i = sum_j w_ij`` renormalises at the border). The system
    of every (image, channel) is symmetric positive definite whenever some pixel is kept, and is
    solved for the whole batch at once by Jacobi-preconditioned conjugate gradients, with the
    3x3 convolution as the matrix product, until every system's largest residual is ``<= tol``
    (converged systems are frozen). The system's condition number grows with the removed region's
    diameter squared, so float32 leaves errors up to ~1e-3 on large regions; float64 (default)
    matches an exact sparse solve to ~1e-6.

    Args:
        images: float ``[n, C, H, W]`` (ROAD imputes in [0, 1] pixel space).
        removed: bool ``[n, H, W]``, True where the pixel is to be imputed.
        tol: the largest absolute residual accepted.
        max_iter: the most CG iterations.
        check_every: iterations between two convergence checks (each costs a device sync).
        dtype: the solver's precision.

    Returns:
        ``images`` with removed pixels replaced, ``[n, C, H, W]`` in ``images.dtype`` (no noise added).
    """
    y = images.to(dtype)
    r_mask = removed[:, None].to(dtype)
    known = 1.0 - r_mask
    s = _neighbour_sum(torch.ones_like(y[:1, :1]))
    rhs = r_mask * _neighbour_sum(y * known)

    def apply(v: Tensor) -> Tensor:
        return r_mask * (s * v - _neighbour_sum(v))

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum((2, 3), keepdim=True)

    start = dot(y, known) / known.sum((2, 3), keepdim=True).clamp(min=1)
    x = r_mask * start
    r = rhs - apply(x)
    z = r / s
    p = z
    rz = dot(r, z)
    active = torch.ones_like(rz, dtype=torch.bool)
    for it in range(max_iter):
        if it % check_every == 0:
            active = r.abs().amax((2, 3), keepdim=True) > tol
            if not bool(active.any()):
                break
        ap = apply(p)
        pap = dot(p, ap)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp(min=1e-300), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        z = r / s
        rz_new = dot(r, z)
        beta = torch.where(active & (rz > 0), rz_new / rz.clamp(min=1e-300), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return torch.where(removed[:, None], x, y).to(images.dtype)


def fraction_counts(fractions: Sequence[float], n: int) -> list[int]:
    """``floor(p * n)`` for each fraction, exact for fractions with up to 6 decimals."""
    return [round(p * 1_000_000) * n // 1_000_000 for p in fractions]


class _Road(Metric):
    """Shared engine of ROAD's MoRF / LeRF curves.

    Protocol (PROTOCOLS.md §2): ranking = map min-max scaled + ``tie_noise`` * N(0, 1); for each
    fraction ``p`` the ``floor(p * N)`` most (MoRF) or least (LeRF) relevant pixels are removed,
    imputed by noisy linear imputation in [0, 1] pixel space (``x * std + mean``), N(0, ``noise``²)
    added to the imputed pixels only, then normalised again for the unchanged model. Scores:
    the mean over fractions of the 0/1 correctness of the top-1 prediction against ``target``
    (the accuracy curve's mean) and, under ``.probability``, of the target's softmax probability.
    LeRF removes the least relevant ``p`` (the reference code keeps ``p`` there) and the
    probability is that of the target (the reference returns class 0's).
    Noise comes from a counter-based generator keyed by (seed, image id, order, fraction), so a
    score does not depend on batch or chunk size.
    """

    category = "faithfulness"
    citation = (
        "Rong, Leemann, Borisov, Kasneci, Kasneci. A Consistent and Efficient Evaluation Strategy "
        "for Attribution Methods. ICML 2022."
    )
    orders: tuple[str, ...] = ()

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
    ) -> None:
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.fractions = [float(p) for p in fractions]
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError(f"mean={self.mean} and std={self.std} must be per-channel lists of one length.")
        if any(v <= 0 for v in self.std):
            raise ConfigError(f"std={self.std} is not valid; accepted: positive values.")
        if not self.fractions or any(not 0.0 < p < 1.0 for p in self.fractions):
            raise ConfigError(f"fractions={self.fractions} is not valid; accepted: values in (0, 1).")
        if noise < 0 or tie_noise < 0:
            raise ConfigError(f"noise={noise}, tie_noise={tie_noise}: accepted: values >= 0.")
        check_choice("target", target, TARGETS)
        check_choice("solver_dtype", solver_dtype, tuple(SOLVER_DTYPES))
        self.solver_dtype = solver_dtype
        self.noise = float(noise)
        self.tie_noise = float(tie_noise)
        self.target = target
        self.tol = float(tol)
        self.max_iter = int(max_iter)

    def ranks(self, ctx: Context, batch: Batch, maps: Tensor) -> Tensor:
        """Rank ``[B, len(orders), N]`` of each pixel under each order (0 = removed first)."""
        flat = maps.flatten(1).float()
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        scaled = (flat - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        keys = image_keys(batch.ids, flat.device)
        ranking = scaled + self.tie_noise * counter_normal(
            ctx.seed, keys, torch.zeros_like(keys), flat.shape[1]
        )
        n = flat.shape[1]
        order = ranking.argsort(dim=1, descending=True, stable=True)
        morf = torch.empty_like(order)
        morf.scatter_(1, order, torch.arange(n, device=flat.device).expand_as(order))
        out = [morf if o == "morf" else n - 1 - morf for o in self.orders]
        return torch.stack(out, 1)

    def curves(self, ctx: Context, batch: Batch, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Correctness and target probability, each ``[B, len(orders), len(fractions)]``."""
        x = batch.images
        b, c, h, w = x.shape
        if len(self.mean) != c:
            raise ValueError(f"{type(self).__name__}: mean/std have {len(self.mean)} channels, images {c}.")
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, c, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, c, 1, 1)
        pixels = x * std + mean
        rank = self.ranks(ctx, batch, maps)
        keys = image_keys(batch.ids, x.device)
        targets = explained_targets(ctx, batch, self.target)
        r_len, p_len = len(self.orders), len(self.fractions)
        counts = torch.tensor(fraction_counts(self.fractions, h * w), device=x.device)
        order_ids = torch.tensor([ORDER_IDS[o] for o in self.orders], device=x.device)
        per_image = r_len * p_len

        def make(sl: slice) -> Tensor:
            k = torch.arange(sl.start, sl.stop, device=x.device)
            bi, ri, pi = k // per_image, (k // p_len) % r_len, k % p_len
            removed = (rank[bi, ri] < counts[pi, None]).view(-1, h, w)
            filled = impute_linear(
                pixels[bi], removed, self.tol, self.max_iter, dtype=SOLVER_DTYPES[self.solver_dtype]
            )
            stream = 1 + order_ids[ri] * 1024 + pi
            noise = counter_normal(ctx.seed, keys[bi], stream, c * h * w).view(-1, c, h, w)
            filled = filled + self.noise * noise * removed[:, None]
            return (filled - mean) / std

        def reduce(sl: slice, logits: Tensor) -> Tensor:
            t = targets[torch.arange(sl.start, sl.stop, device=x.device) // per_image]
            correct = (logits.argmax(1) == t).float()
            prob = logits.softmax(1).gather(1, t[:, None]).squeeze(1)
            return torch.stack([correct, prob], 1)

        out = ctx.map_forward(b * per_image, make, reduce).view(b, r_len, p_len, 2)
        return out[..., 0], out[..., 1]



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
    orders = ("morf",)


class RoadLeRF(_RoadSingle):
    """ROAD, least relevant first: accuracy as the bottom ``p`` pixels are imputed; higher is better."""

    higher_is_better = True
    orders = ("lerf",)


class RoadABC(_Road):
    """ROAD's gap between the curves: mean over fractions of LeRF minus MoRF accuracy; higher is better."""

    higher_is_better = True
    orders = ("morf", "lerf")

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        correct, prob = self.curves(ctx, batch, maps)
        return MetricOutput(
            scores={
                "": (correct[:, 1] - correct[:, 0]).mean(1),
                "probability": (prob[:, 1] - prob[:, 0]).mean(1),
            },
            curves={
                "morf": correct[:, 0], "lerf": correct[:, 1],
                "morf.probability": prob[:, 0], "lerf.probability": prob[:, 1],
            },
        )
