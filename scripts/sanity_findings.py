"""Run the sanity checks on the embedded benchmark's trained model and write the findings file.

    python scripts/sanity_findings.py --images 32 --threads 1

Cascading and independent model-parameter randomisation (the presets in conf/metric/) and data
randomisation (against results/reference/models/shapes_cnn_shuffled.pt) for gradient, Grad-CAM,
guided backprop and, where methods/ has them, guided Grad-CAM and input x gradient. Writes
``results/reference/sanity_findings.md`` (mean similarity to the original map per randomisation
step, per method).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time

import torch
from hydra.utils import instantiate

from bench import ROOT
from bench.api import compose
from bench.core.batch import collate
from bench.core.context import Context
from bench.core.paths import resolve_path
from bench.data.shapes import ShapesDataset
from bench.engine.provenance import machine
from bench.engine.training_script import command_line
from bench.methods import cam, gradient
from bench.methods.base import Method
from bench.models import load_shapes_cnn


class _CaptumGuidedBackprop(Method):
    """Fallback when bench.methods.gradient has no GuidedBackprop: captum's, max |.| over channels."""

    def __init__(self) -> None:
        super().__init__("max_abs")

    def attribute(self, model, images, targets):
        from captum.attr import GuidedBackprop

        return GuidedBackprop(model).attribute(images, target=targets)


def methods(layer: str) -> dict[str, Method]:
    out: dict[str, Method] = {"gradient": gradient.Gradient(), "gradcam": cam.GradCAM(layer)}
    gbp = getattr(gradient, "GuidedBackprop", None)
    out["guided_backprop"] = gbp() if gbp is not None else _CaptumGuidedBackprop()
    if hasattr(cam, "GuidedGradCAM"):
        out["guided_gradcam"] = cam.GuidedGradCAM(layer)
    if hasattr(gradient, "InputXGradient"):
        out["input_x_gradient"] = gradient.InputXGradient()
    return out


def metric(name: str, **overrides):
    cfg = compose(f"metric=[{name}]").metric[name]
    cfg.update(overrides)
    return instantiate(cfg)


def mean(t: torch.Tensor) -> float:
    return round(float(t.double().nanmean()), 3)


def table(rows: list[str], cols: list[str], cell) -> list[str]:
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += ["| " + r + " | " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    model = load_shapes_cnn(args.checkpoint)
    ds = ShapesDataset("test", size=args.images)
    batch = collate([ds[i] for i in range(len(ds))])
    accuracy = float((model(batch.images).argmax(1) == batch.targets).float().mean())
    meths = methods(model.bench_meta.cam_layer)
    checks = {
        "cascading": metric("model_randomisation_cascading"),
        "independent": metric("model_randomisation_independent"),
    }
    label_rule = metric(
        "model_randomisation_cascading", target="label", similarities=["spearman_abs"]
    )
    have_shuffled = resolve_path(args.shuffled).is_file()
    data = metric("data_randomisation") if have_shuffled else None
    names = checks["cascading"].curve_labels(model)
    sims = list(checks["cascading"].similarities)
    res: dict = {"layers": names, "similarities": sims, "methods": {}}
    for mname, method in meths.items():
        ctx = Context(model=model, method=method, seed=args.seed)
        res["methods"][mname] = findings(ctx, model, method, batch, checks, label_rule, data)
    seconds = round(time.time() - start, 1)
    md = header(args, argv, meths, accuracy, len(ds), seconds)
    md += tables(res, names, sims, list(meths), data is not None, args.shuffled)
    out = resolve_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=32, help="first N images of the shapes test split")
    p.add_argument("--checkpoint", default="results/reference/models/shapes_cnn.pt")
    p.add_argument("--shuffled", default="results/reference/models/shapes_cnn_shuffled.pt")
    p.add_argument("--out", default="results/reference/sanity_findings.md")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


def findings(ctx: Context, model, method: Method, batch, checks: dict, label_rule, data) -> dict:
    """One method's findings: the similarity of an unrandomised copy, each check's curves,
    scores and flags, the fixed-label rule's, and data randomisation's when it runs."""
    maps = method(model, batch.images, batch.targets)
    entry: dict = {}
    # an unrandomised deep copy: the similarity a method gets when nothing changed
    ref = checks["cascading"]
    t0 = ctx.predictions(batch.images)
    same = ref.similarity(
        method(model, batch.images, t0), method(copy.deepcopy(model), batch.images, t0)
    )
    entry["unrandomised_copy"] = {s: mean(v) for s, v in same.items()}
    for kind, check in checks.items():
        out = check(ctx, batch, maps)
        entry[kind] = {s: [mean(c[:, i]) for i in range(c.shape[1])] for s, c in out.curves.items()}
        entry[kind + "_score"] = {s: mean(v) for s, v in out.scores.items()}
        entry[kind + "_flagged"] = {s: int(f.sum()) for s, f in out.flags.items()}
    out = label_rule(ctx, batch, maps)
    curve = out.curves["spearman_abs"]
    entry["label_rule"] = {
        "nan_steps": int(curve.isnan().sum()),
        "steps": curve.numel(),
        "images_flagged": int(out.flags["spearman_abs"].sum()),
        "final": mean(curve[:, -1]),
        "score": mean(out.scores["spearman_abs"]),
    }
    if data is not None:
        out = data(ctx, batch, maps)
        entry["data"] = {s: mean(v) for s, v in out.scores.items()}
        entry["data_flagged"] = {s: int(f.sum()) for s, f in out.flags.items()}
    return entry


def header(
    args, argv, meths: dict[str, Method], accuracy: float, n: int, seconds: float
) -> list[str]:
    """The findings file's title, provenance, settings and methods."""
    command = command_line("sanity_findings.py", argv)
    where = machine()
    load = "/".join(map(str, where["load_average"] or ["unknown"]))
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        "# Sanity checks on the embedded benchmark's CNN: findings",
        "",
        f"Made by `{command}` (git {git}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {torch.get_num_threads()} threads, {seconds} s; "
        f"{where['cpu']}, {where['cores']} cores, load average {load} at the end). "
        f"Model `{args.checkpoint}` (accuracy {accuracy:.3f} on these images); the first "
        f"{n} images of the shapes test split (112 px); seed {args.seed}.",
        "",
        "Settings: the presets `conf/metric/model_randomisation_cascading.yaml`, "
        "`model_randomisation_independent.yaml` and `data_randomisation.yaml` (reference protocol: "
        "class = each model's own top-1, maps normalised by their 99th percentile, SSIM/HOG on "
        "min–max scaled abs maps, SSIM data_range 1, HOG 16 px cells / 3x3 blocks / L2-Hys, "
        "compared by Spearman; batch-norm running statistics kept as trained). Values are the mean "
        "over images of the similarity to the original map (1 = unchanged); NaN steps (constant "
        "maps) are left out of a mean and counted below.",
        "",
        "Methods: "
        + ", ".join(f"{k} = `{type(v).__module__}.{type(v).__name__}`" for k, v in meths.items())
        + " (default settings).",
        "",
        "These are findings, not assertions: the tests only assert that gradient and Grad-CAM "
        "change under cascading randomisation.",
        "",
    ]


def tables(
    res: dict, names: list[str], sims: list[str], cols: list[str], has_data: bool, shuffled: str
) -> list[str]:
    """The findings' sections: summary, cascading per similarity, independent, the class rule,
    scores, data randomisation."""
    md: list[str] = []
    md += summary(res, names, cols, has_data)
    for s in sims:
        md += [
            f"## Cascading randomisation, top-down: {s}",
            "",
            "Row = the layer whose randomisation was added at that step (all rows above it are "
            "randomised too).",
            "",
        ]
        rows = ["unrandomised copy"] + names
        md += table(
            rows,
            cols,
            lambda r, c, s=s: str(
                res["methods"][c]["unrandomised_copy"][s]
                if r == "unrandomised copy"
                else res["methods"][c]["cascading"][s][names.index(r)]
            ),
        )
        md.append("")
    md += ["## Independent randomisation (one layer at a time): spearman_abs", ""]
    md += table(
        names,
        cols,
        lambda r, c: str(res["methods"][c]["independent"]["spearman_abs"][names.index(r)]),
    )
    md += [
        "",
        "## The class rule: fixed label instead of each model's top-1 (cascading, spearman_abs)",
        "",
        "A NaN step is a constant map after randomisation (no ranking to compare).",
        "",
    ]
    md += table(
        ["NaN steps / steps", "images flagged", "final step (NaN left out)", "score"],
        cols,
        lambda r, c: {
            "NaN steps / steps": "{nan_steps}/{steps}",
            "images flagged": "{images_flagged}",
            "final step (NaN left out)": "{final}",
            "score": "{score}",
        }[r].format(**res["methods"][c]["label_rule"]),
    )
    md += ["", "## Scores (mean over steps) and flagged images", ""]
    md += table(
        [f"{k} {s}" for k in ("cascading", "independent") for s in sims],
        cols,
        lambda r, c: "{} ({} flagged)".format(
            res["methods"][c][r.split()[0] + "_score"][r.split()[1]],
            res["methods"][c][r.split()[0] + "_flagged"][r.split()[1]],
        ),
    )
    md.append("")
    md += data_section(res, sims, cols, has_data, shuffled)
    return md


def summary(res: dict, names: list[str], cols: list[str], has_data: bool) -> list[str]:
    """The summary section: per method, cascading spearman_abs at the first, middle and last step."""
    md: list[str] = []
    md += ["## Summary (cascading, spearman_abs)", ""]
    for c in cols:
        curve = res["methods"][c]["cascading"]["spearman_abs"]
        below = next((names[i] for i, v in enumerate(curve) if v == v and v < 0.5), None)
        md.append(
            f"- {c}: {curve[0]} after `{names[0]}`, {curve[len(curve) // 2]} after "
            f"`{names[len(curve) // 2]}`, {curve[-1]} fully randomised; first below 0.5 at "
            f"`{below}`"
            + (
                f"; data randomisation {res['methods'][c]['data']['spearman_abs']}"
                if has_data
                else ""
            )
            + "."
        )
    md.append("")
    return md


def data_section(
    res: dict, sims: list[str], cols: list[str], has_data: bool, shuffled: str
) -> list[str]:
    """The data randomisation section (or a line saying it did not run)."""
    md: list[str] = []
    if has_data:
        rec = json.loads(resolve_path(shuffled).with_suffix(".json").read_text())
        md += [
            "## Data randomisation",
            "",
            f"Permuted-label model `{shuffled}`: `{rec.get('command')}` — train accuracy on "
            f"its permuted labels {rec.get('train_accuracy')} ({rec.get('train_size')} images, "
            f"{rec.get('epochs')} epochs), test accuracy on true labels {rec.get('test_accuracy')}.",
            "",
        ]
        md += table(
            sims,
            cols,
            lambda r, c: "{} ({} flagged)".format(
                res["methods"][c]["data"][r], res["methods"][c]["data_flagged"][r]
            ),
        )
        md.append("")
    else:
        md += ["## Data randomisation", "", f"Not run: {shuffled} does not exist.", ""]
    return md


if __name__ == "__main__":
    sys.exit(main())
