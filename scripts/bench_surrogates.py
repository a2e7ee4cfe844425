"""Speed of the batched LIME / kernel SHAP vs the ``lime`` / ``shap`` package wrappers, and agreement.

    python scripts/bench_surrogates.py [--threads 1] [--repeats 3] [--device cpu]

Two cases: the committed embedded shapes CNN on ``--images`` test images of the embedded benchmark
(112 px) with ``--samples`` samples, and a torchvision ResNet-18 (random weights, 224 px) on
``--resnet-images`` images with ``--resnet-samples``. For each case ``lime`` vs ``lime_batched``
and ``kernel_shap`` vs ``kernel_shap_batched`` run at equal samples, superpixels and
``batch_size``, interleaved (package, batched, package, batched, ...) after one untimed warm-up
call each; median and min-max wall and CPU seconds over ``--repeats``. Agreement: the packages' own
samples (lime's ``data`` and shap's ``maskMatrix``, captured from the wrappers' runs) go through
the batched methods' forward (device fill) and solver, and the largest ``|map difference|`` from
the wrappers' maps is reported. Writes ``--out`` (default results/perf/surrogates_cpu.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import warnings
from importlib.metadata import version

import torch
import torchvision

from bench import ROOT
from bench.core.batch import collate
from bench.core.profiling import cpu_model
from bench.data.shapes import ShapesDataset
from bench.methods.superpixel import BatchedKernelShap, BatchedLime, KernelShap, Lime
from bench.methods.surrogate import (
    cosine_distance_to_ones,
    kernel_shap_fit,
    lime_kernel,
    ridge_fit,
)
from bench.models import load_shapes_cnn


def timed(fn) -> tuple[float, float]:
    """Wall and CPU (this process's: the steadier figure on a shared machine) seconds of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


class _Recorder:
    """Keeps what the packages compute inside the wrappers: lime's regression inputs, shap's
    explainers (their samples, weights and values)."""

    def __enter__(self):
        import shap
        from lime import lime_base

        self.lime, self.shap = [], []
        self._base, self._shap = lime_base.LimeBase.explain_instance_with_data, shap.KernelExplainer
        record, original = self, self._base

        def spy(base, data, labels, distances, label, *args, **kwargs):
            record.lime.append((data.copy(), labels[:, label].copy(), distances.copy()))
            return original(base, data, labels, distances, label, *args, **kwargs)

        class Kept(shap.KernelExplainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                record.shap.append(self)

        lime_base.LimeBase.explain_instance_with_data = spy
        shap.KernelExplainer = Kept
        return self

    def __exit__(self, *exc):
        import shap
        from lime import lime_base

        lime_base.LimeBase.explain_instance_with_data = self._base
        shap.KernelExplainer = self._shap


def lime_agreement(model, images, targets, package: Lime, batched: BatchedLime) -> float:
    """Largest |map difference| when lime's own samples go through the batched forward and ridge."""
    with _Recorder() as rec:
        ref = package(model, images, targets)
    seg = batched.segments(images)
    worst = 0.0
    for i, (data, _, _) in enumerate(rec.lime):
        masks = torch.from_numpy(data > 0)[None].to(images.device)
        valid = torch.ones_like(masks[..., 0])
        with torch.no_grad():
            values = batched.values(
                model, images[i : i + 1], targets[i : i + 1], seg[i : i + 1], masks, valid
            )
        w = lime_kernel(cosine_distance_to_ones(masks), batched.kernel_width)
        coef = ridge_fit(masks, w, values)[0]
        ours = coef.float()[0][seg[i]]
        worst = max(worst, float((ours - ref[i]).abs().max()))
    return worst


def shap_agreement(
    model, images, targets, package: KernelShap, batched: BatchedKernelShap
) -> float:
    """Largest |map difference| when shap's own coalitions and weights go through the batched
    forward (device blur) and solver."""
    with _Recorder() as rec:
        ref = package(model, images, targets)
    seg = batched.segments(images)
    worst = 0.0
    for i, ex in enumerate(rec.shap):
        m = ex.maskMatrix.shape[1]
        z = torch.from_numpy(ex.maskMatrix > 0)
        masks = torch.cat(
            [torch.ones(1, m, dtype=torch.bool), torch.zeros(1, m, dtype=torch.bool), z]
        )
        masks = masks[None].to(images.device)
        valid = torch.ones_like(masks[..., 0])
        with torch.no_grad():
            values = batched.values(
                model, images[i : i + 1], targets[i : i + 1], seg[i : i + 1], masks, valid
            )
        weights = torch.from_numpy(ex.kernelWeights)[None].to(images.device)
        phi = kernel_shap_fit(masks[:, 2:], weights, values[:, 2:], values[:, 0], values[:, 1])
        ours = phi.float()[0][seg[i]]
        worst = max(worst, float((ours - ref[i]).abs().max()))
    return worst


#: Kernel SHAP's agreement runs on the first image with at least this many samples: with 50
#: superpixels and fewer than ~100 samples its regression is singular (a coalition and its
#: complement give the same row up to sign), and shap's phi is then whatever numpy's solve returns.
AGREE_SHAP_SAMPLES = 200


def run_case(name, model, images, targets, samples, batch_size, repeats) -> list[str]:
    model.eval()
    pairs = [
        (
            "lime",
            Lime(n_samples=samples, batch_size=batch_size),
            BatchedLime(n_samples=samples, batch_size=batch_size),
        ),
        (
            "kernel_shap",
            KernelShap(n_samples=samples, batch_size=batch_size),
            BatchedKernelShap(n_samples=samples, batch_size=batch_size),
        ),
    ]
    rows = []
    for label, package, batched in pairs:
        package(model, images[:1], targets[:1])  # warm-up: imports, numba, allocator
        batched(model, images[:1], targets[:1])
        t_pkg, t_ours = [], []
        for _ in range(repeats):
            t_pkg.append(timed(lambda p=package: p(model, images, targets)))
            t_ours.append(timed(lambda b=batched: b(model, images, targets)))
        if label == "lime":
            agree = lime_agreement(model, images, targets, package, batched)
        else:  # a regular system: paired coalitions give half as many distinct rows as samples
            n = max(samples, AGREE_SHAP_SAMPLES)
            agree = shap_agreement(
                model,
                images[:1],
                targets[:1],
                KernelShap(n_samples=n, batch_size=batch_size),
                BatchedKernelShap(n_samples=n, batch_size=batch_size),
            )
        wall_p, cpu_p = [t[0] for t in t_pkg], [t[1] for t in t_pkg]
        wall_b, cpu_b = [t[0] for t in t_ours], [t[1] for t in t_ours]
        rows.append(
            f"| {name} | {label} vs {label}_batched | {len(images)} x {samples} | "
            f"{spread(wall_p)} | {spread(wall_b)} | "
            f"{statistics.median(wall_p) / statistics.median(wall_b):.2f}x | "
            f"{spread(cpu_p)} | {spread(cpu_b)} | "
            f"{statistics.median(cpu_p) / statistics.median(cpu_b):.2f}x | {agree:.1e} |"
        )
        print(rows[-1], flush=True)
    return rows


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--resnet-images", type=int, default=2)
    parser.add_argument("--resnet-samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="results/reference/models/shapes_cnn.pt")
    parser.add_argument("--out", default="results/perf/surrogates_cpu.md")
    return parser.parse_args()


def resnet_inputs(
    n: int, device: torch.device
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A random-weight ResNet-18, ``n`` smooth random 224 px images and its top-1 classes."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).to(device)
    gen = torch.Generator().manual_seed(0)
    coarse = torch.randn(n, 3, 8, 8, generator=gen)
    big = torch.nn.functional.interpolate(coarse, size=(224, 224), mode="bicubic")
    big = (big + 0.1 * torch.randn(big.shape, generator=gen)).to(device)
    with torch.no_grad():
        top = resnet.eval()(big).argmax(1)
    return resnet, big, top


def report(args: argparse.Namespace, device: torch.device, rows: list[str]) -> str:
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    command = (
        f"python scripts/bench_surrogates.py --threads {args.threads} --repeats {args.repeats} "
        f"--images {args.images} --samples {args.samples} --resnet-images {args.resnet_images} "
        f"--resnet-samples {args.resnet_samples} --batch-size {args.batch_size} --device {args.device}"
    )
    versions = ", ".join(
        f"{p} {version(p)}"
        for p in ("torch", "torchvision", "lime", "shap", "scikit-image", "numpy")
    )
    lines = [
        "# Batched LIME / kernel SHAP vs the package wrappers",
        "",
        f"`{command}` at {git} (uncommitted working tree).",
        "",
        f"Machine: {cpu_model()} ({os.cpu_count()} cores visible, load average "
        f"{os.getloadavg()[0]:.1f}: shared with other jobs, so wall times are noisy), device "
        f"{device}, {torch.get_num_threads()} torch thread(s). {versions}.",
        "",
        "Seconds for the whole batch (wall, and this process's CPU time), median (min-max) of the "
        "interleaved repeats; equal "
        "samples per image, n_segments 50, compactness 10, batch_size "
        f"{args.batch_size}, fill: lime hide_color 0, kernel SHAP blur 16. "
        "Max |diff|: the packages' own samples (captured from the wrapper runs) through the batched "
        "forward and solver vs the wrappers' maps (lime: every image at the row's samples; "
        f"kernel SHAP: the first image at max(samples, {AGREE_SHAP_SAMPLES}) samples, so that its "
        "regression is regular).",
        "",
        "Both sides forward the same images in the same chunks; the model's forward is most of "
        "either's time on the CPU, so the batched versions gain what the packages spend around it "
        "(numpy perturbation, per-image loops). On a shared machine the CPU seconds are the "
        "steadier figure; keep the run short (a few minutes).",
        "",
        "| model | methods | images x samples | package wall s | batched wall s | wall speed-up "
        "| package CPU s | batched CPU s | CPU speed-up | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    # shap's own warning when few samples make its regression singular (the wrapper's runs)
    warnings.filterwarnings("ignore", message="Linear regression equation is singular")
    device = torch.device(args.device)

    ds = ShapesDataset("test")
    batch = collate([ds[i] for i in range(args.images)])
    shapes = load_shapes_cnn(str(ROOT / args.model)).to(device)
    rows = run_case(
        "shapes_cnn 112 px",
        shapes,
        batch.images.to(device),
        batch.targets.to(device),
        args.samples,
        args.batch_size,
        args.repeats,
    )
    resnet, big, top = resnet_inputs(args.resnet_images, device)
    rows += run_case(
        "resnet18 (random) 224 px",
        resnet,
        big,
        top,
        args.resnet_samples,
        args.batch_size,
        args.repeats,
    )
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(args, device, rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
