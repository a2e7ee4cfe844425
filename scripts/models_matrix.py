"""Which methods apply to which model family (timm, Hugging Face), and what Grad-CAM and rollout cost.

    PYTHONPATH=. python scripts/models_matrix.py --threads 2 --images 4 --repeat 3

Part 1, the matrix: every method (``conf/method/``) on the tiny model of every family of
``tests/_transformers.py`` (random weights, 32-64 px; the same settings as the method tests): the
method's check (:meth:`bench.methods.base.Method.check`, what a sweep reads to skip it) and one call
on two images; ``works`` or the need it lacks (the reason is listed once per need and family).
Part 2, the timings: Grad-CAM (``gradcam``) and attention rollout on the families at their real
size (224 px, random weights, seeded; the architectures named below), ``--images`` images per call,
the median [min-max] of ``--repeat`` calls after one warm-up, in ms per image, wall clock. Writes
``results/reference/models.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from bench import ROOT
from bench.api import compose
from bench.config.overrides import options
from bench.core.errors import Unfit
from bench.core.profiling import cpu_model
from bench.models import meta_of

sys.path.insert(0, str(ROOT))  # the tests' tiny families and fast method settings
from tests._transformers import FAMILIES, load_family  # noqa: E402
from tests.methods.conftest import make_method  # noqa: E402

#: family -> overrides of the real-size model timed in part 2 (random weights, 224 px).
REAL = {
    "timm_vit": ["model=timm", "model.arch=vit_small_patch16_224"],
    "timm_deit": ["model=timm", "model.arch=deit_small_distilled_patch16_224"],
    "timm_swin": ["model=timm", "model.arch=swin_tiny_patch4_window7_224"],
    "timm_convnext": ["model=timm", "model.arch=convnext_tiny"],
    "timm_resnet": ["model=timm", "model.arch=resnet50"],
    "timm_efficientnet": ["model=timm", "model.arch=efficientnet_b0"],
    "hf_vit": ["model=hf", "model.config=vit"],  # ViTConfig() = ViT-B/16
    "hf_deit": ["model=hf", "model.config=deit"],  # DeiTConfig() = DeiT-B (distilled tokens)
    "hf_swin": ["model=hf", "model.config=swin"],  # SwinConfig() = Swin-T
    "hf_convnext": ["model=hf", "model.config=convnext"],  # ConvNextConfig() = ConvNeXt-T
}
TIMED = ("gradcam", "attention_rollout")


def outcome(name: str, model: torch.nn.Module) -> tuple[str, str]:
    """``("works", "")`` or ``("refused (<need>)", why)`` for method ``name`` on ``model``."""
    method = make_method(name, "none", overrides=[f"model.cam_layer={meta_of(model).cam_layer}"])
    try:
        method.check(model)
    except Unfit as err:
        return f"refused ({err.need})", err.why
    x = torch.randn(2, 3, *meta_of(model).input_size, generator=torch.Generator().manual_seed(0))
    maps = method(model, x, torch.tensor([0, 3]))
    ok = maps.shape == (2, *x.shape[-2:]) and bool(torch.isfinite(maps).all())
    return ("works", "") if ok else ("FAILED", f"shape {list(maps.shape)} or non-finite")


def matrix(families: list[str]) -> list[str]:
    methods = options("method")
    rows, reasons = [], {}
    for family in families:
        model = load_family(family)
        cells = []
        for name in methods:
            status, why = outcome(name, model)
            cells.append("works" if status == "works" else status.removeprefix("refused "))
            if why:
                reasons.setdefault((status, why), []).append(f"{family}:{name}")
        rows.append(cells)
        print(f"{family}: {sum(c == 'works' for c in cells)}/{len(methods)} work", flush=True)
    out = ["| method | " + " | ".join(families) + " |", "|---" * (len(families) + 1) + "|"]
    for i, name in enumerate(methods):
        out.append(f"| {name} | " + " | ".join(r[i] for r in rows) + " |")
    out += [
        "",
        "Why each refusal (the check's one line, after `cannot apply to model M (needs N):`):",
        "",
    ]
    for (status, why), where in sorted(reasons.items()):
        fams = sorted({w.split(":")[0] for w in where})
        out.append(f"- {status} on {', '.join(fams)} ({len(where)} cells): {why}")
    return out


def _forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def _median_ms(call, images: int, repeat: int) -> str:
    """``median [min-max]`` ms per image of ``repeat`` calls after one warm-up."""
    call()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        runs.append((time.perf_counter() - start) * 1000 / images)
    return f"{statistics.median(runs):.0f} [{min(runs):.0f}-{max(runs):.0f}]"


def timing(family: str, images: int, repeat: int) -> list[str]:
    model = instantiate(compose(*REAL[family]).model)
    meta = meta_of(model)
    x = torch.randn(images, 3, *meta.input_size, generator=torch.Generator().manual_seed(0))
    t = torch.zeros(images, dtype=torch.long)
    arch = REAL[family][1].split("=", 1)[1]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    cells = [_median_ms(lambda: _forward(model, x), images, repeat)]
    for name in TIMED:
        method = make_method(name, "none", overrides=[f"model.cam_layer={meta.cam_layer}"])
        try:
            method.check(model)
        except Unfit as err:
            cells.append(f"refused ({err.need})")
            continue
        cells.append(_median_ms(lambda m=method: m(model, x, t), images, repeat))
    print(f"{family}: {cells}", flush=True)
    size = f"{meta.input_size[0]}x{meta.input_size[1]}"
    return [
        f"| {family} | {arch} | {params:.0f}M | {size} | {meta.cam_layer} | "
        + " | ".join(cells)
        + " |"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results" / "reference" / "models.md"))
    parser.add_argument(
        "--families", default=",".join(REAL), help=f"comma-separated, of {', '.join(REAL)}"
    )
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in REAL or f not in FAMILIES]
    if unknown:
        parser.error(f"--families {','.join(unknown)}: accepted: {', '.join(REAL)}")
    torch.set_num_threads(args.threads)
    import timm
    import transformers

    lines = [
        "# Methods x model families, and what Grad-CAM and rollout cost",
        "",
        f"Made by `PYTHONPATH=. python scripts/models_matrix.py --threads {args.threads} --images "
        f"{args.images} --repeat {args.repeat}` on {cpu_model()} ({args.threads} threads, shared "
        f"with other work), torch {torch.__version__}, timm {timm.__version__}, transformers "
        f"{transformers.__version__}, Python {platform.python_version()}.",
        "",
        "## Which methods apply (tiny models of tests/_transformers.py, random weights)",
        "",
        "`works`: the method's check passes and it returns a finite map of the input's size; "
        "otherwise the need it lacks (a glob sweep over methods skips it in one line, NOT "
        "APPLICABLE).",
        "",
        *matrix(families),
        "",
        "## Grad-CAM and rollout, ms per image (median [min-max])",
        "",
        f"{args.images} images per call, {args.repeat} calls after one warm-up, random weights, "
        "wall clock on the CPU.",
        "",
        "Rollout's time includes recomputing every block's attention from its input (the fused "
        "kernel hides the weights) and checking it against the block's output; `forward` is one "
        "forward pass without gradients, for scale.",
        "",
        "| family | architecture | parameters | input | CAM layer | forward | gradcam | "
        "attention_rollout |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family in families:
        lines += timing(family, args.images, args.repeat)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
