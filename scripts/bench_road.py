"""Speed of ROAD's imputation: our batched solve vs a per-image sparse solve vs the model's forward.

    python scripts/bench_road.py --images 16 --threads 1 [--before-images 1]

On ``--images`` test images of the embedded benchmark (112 px) and the committed shapes CNN, the
masks ROAD builds (MoRF and LeRF at the 7 default fractions, ranked by the input-gradient
magnitude) are imputed (a) by :func:`metrics.road.impute_linear`, all at once; (b) by
``scipy.sparse.linalg.spsolve``, one image (all channels) at a time, the way the reference code
and a peer's harness do it; and (c) the model's forward pass over the same perturbed images
(what ROAD needs the imputation for). Also reports the largest difference between (a) and (b), the
whole ``RoadABC`` metric's time, and optionally (``--before-images``) the previous solver (plain
Jacobi-preconditioned CG, loaded from git revision ``--before-rev``). Writes
``results/reference/road_speed.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import coo_matrix, diags
from scipy.sparse.linalg import spsolve

from bench import ROOT
from bench.core.batch import collate
from bench.core.context import Context
from bench.core.paths import resolve_path
from bench.data.shapes import ShapesDataset
from bench.models import load_shapes_cnn
from metrics.road import FRACTIONS, NEIGHBOUR_WEIGHTS, RoadABC, fraction_counts, impute_linear

OFFSETS = [
    (dy - 1, dx - 1, NEIGHBOUR_WEIGHTS[dy][dx])
    for dy in range(3)
    for dx in range(3)
    if NEIGHBOUR_WEIGHTS[dy][dx]
]


def sparse_impute(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The reference system for one image ``[C, H, W]`` (vectorised assembly), solved by ``spsolve``."""
    c, h, w = img.shape
    flat = img.reshape(c, -1)
    idx = np.flatnonzero(removed)
    n = len(idx)
    var = -np.ones(h * w, dtype=np.int64)
    var[idx] = np.arange(n)
    r0, c0 = np.divmod(idx, w)
    e = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    for dy, dx, wt in OFFSETS:
        y, x = r0 + dy, c0 + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        diag[inside] += wt
        j = np.where(inside, y * w + x, 0)
        unknown = inside & (var[j] >= 0)
        rows.append(e[unknown])
        cols.append(var[j[unknown]])
        vals.append(np.full(int(unknown.sum()), -wt))
        known = inside & (var[j] < 0)
        rhs[known] += wt * flat[:, j[known]].T
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    sol = spsolve((a + diags(diag)).tocsc(), rhs).reshape(n, c)
    out = flat.copy()
    out[:, idx] = sol.T
    return out.reshape(c, h, w)


def load_before(rev: str):
    """``impute_linear`` of ``metrics/road.py`` at git revision ``rev``."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:metrics/road.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "road_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("road_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.impute_linear


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, repeat: int = 1):
    """Best ``(wall, cpu)`` seconds of ``repeat`` calls and the last result.

    The CPU time (this process's) is the steadier figure on a machine shared with other jobs.
    """
    best, out = (float("inf"), float("inf")), None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", default="results/reference/models/shapes_cnn.pt")
    parser.add_argument(
        "--before-images", type=int, default=0, help="images for the previous solver (slow)"
    )
    parser.add_argument("--before-rev", default="f4d4279")
    parser.add_argument("--out", default="results/reference/road_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_shapes_cnn(args.model)
    ds = ShapesDataset("test")
    batch = collate([ds[i] for i in range(args.images)])
    mean, std = list(ds.mean.flatten().tolist()), list(ds.std.flatten().tolist())
    images = batch.images.clone().requires_grad_(True)
    model(images).gather(1, batch.targets[:, None]).sum().backward()
    maps = images.grad.abs().sum(1)
    images = batch.images

    metric = RoadABC(mean=mean, std=std)
    ctx = Context(model=model, seed=0)
    b, c, h, w = images.shape
    pixels = images * torch.tensor(std).view(1, c, 1, 1) + torch.tensor(mean).view(1, c, 1, 1)
    rank = metric.ranks(ctx, batch, maps)  # [B, 2, N]
    counts = torch.tensor(fraction_counts(FRACTIONS, h * w))
    removed = (rank[:, :, None] < counts[None, None, :, None]).view(-1, h, w)
    inputs = pixels.repeat_interleave(removed.shape[0] // b, 0)
    n = removed.shape[0]

    t_ours, ours = timed(lambda: impute_linear(inputs, removed), args.repeat)
    t_sparse, ref = timed(
        lambda: np.stack(
            [sparse_impute(inputs[i].double().numpy(), removed[i].numpy()) for i in range(n)]
        )
    )
    err = float(np.abs(ours.double().numpy() - ref).max())
    normalised = (ours - torch.tensor(mean).view(1, c, 1, 1)) / torch.tensor(std).view(1, c, 1, 1)
    with torch.no_grad():
        model(normalised[:8])
        t_fwd, _ = timed(lambda: model(normalised), args.repeat)
        t_fwd_clean, _ = timed(lambda: model(images), args.repeat)
    t_metric, _ = timed(lambda: metric(Context(model=model, seed=0), batch, maps))

    rows = [
        ("(a) batched multigrid-CG solve, all masks at once", t_ours),
        ("(b) scipy spsolve, one image (3 channels) at a time", t_sparse),
        (f"(c) model forward over the {n} perturbed images", t_fwd),
        (f"model forward over the {b} clean images", t_fwd_clean),
        ("whole RoadABC metric (ranking, imputation, noise, forwards)", t_metric),
    ]
    before = ""
    if args.before_images:
        k = args.before_images * removed.shape[0] // b
        old = load_before(args.before_rev)
        t_old, out_old = timed(lambda: old(inputs[:k], removed[:k]))
        err_old = float(np.abs(out_old.double().numpy() - ref[:k]).max())
        t_new_k, _ = timed(lambda: impute_linear(inputs[:k], removed[:k]), args.repeat)
        before = (
            f"\nBefore/after on the first {args.before_images} image(s) ({k} masks), CPU (wall) seconds: "
            f"previous solver (Jacobi-preconditioned CG, `{args.before_rev}`) {t_old[1]:.2f} ({t_old[0]:.2f}), "
            f"max |diff| vs spsolve {err_old:.1e}; multigrid {t_new_k[1]:.3f} ({t_new_k[0]:.3f}); "
            f"spsolve ~{t_sparse[1] * k / n:.2f}.\n"
        )
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# ROAD imputation speed",
        "",
        f"`python scripts/bench_road.py --images {args.images} --threads {args.threads}` at {git}: "
        f"{b} test images of the embedded benchmark ({h}x{w}), {n} masks (MoRF + LeRF x {len(FRACTIONS)} "
        f"fractions, input-gradient ranking), float64 solve, tol 1e-7.",
        "",
        f"Machine: {cpu_model()} ({os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f}, "
        f"shared with other jobs), torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"Python {platform.python_version()}, device cpu. Best of {args.repeat} runs for (a) and (c).",
        "",
        "| step | wall s | CPU s | CPU ms per mask |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {t[0]:.3f} | {t[1]:.3f} | {1e3 * t[1] / n:.2f} |" for name, t in rows],
        "",
        f"Largest |(a) - (b)| over all masks, channels and pixels: {err:.1e}.",
        f"CPU time: (a) is {t_sparse[1] / t_ours[1]:.1f}x faster than (b) and {t_ours[1] / t_fwd[1]:.1f}x the "
        f"forward pass (c); wall time: {t_sparse[0] / t_ours[0]:.1f}x and {t_ours[0] / t_fwd[0]:.1f}x.",
        before,
        "Notes:",
        "- Solver: CG preconditioned by a geometric multigrid V(1,1)-cycle (Galerkin coarse stencils",
        "  from masked bilinear interpolation, Jacobi smoothing, dense Cholesky on the coarsest grid), in",
        "  float32 inside a float64 iterative refinement; ~10-13 V-cycles per mask whatever the removed",
        "  region, against hundreds to thousands of CG steps before. On a CPU the masks go through in",
        "  cache-sized blocks (about 6 masks of 3x112x112 per block); on a GPU all at once.",
        "- On this CPU the per-image sparse LU (SuperLU) is a strong baseline: the multigrid is ~20x",
        "  faster than the previous solver but only ~1.3-1.9x faster than spsolve, and ~6x the model's",
        "  forward pass (the embedded CNN is tiny). On an accelerator the whole batch is one block, so",
        "  each solver step is a handful of large tensor ops; not measured here (no GPU was available).",
        "- Threads: with torch's default 2 intra-op threads on this shared 2-core machine, one neighbour",
        "  sum over 3x112x112 float64 took ~280 ms instead of ~0.15 ms with 1 thread (contention with",
        "  the other jobs); the figures above use 1 thread (`--threads`).",
    ]
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    out = resolve_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
