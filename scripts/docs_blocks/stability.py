"""The blocks of docs/stability.md and the README's regression section: the regression
tolerances derived from each metric's declared stability, and what re-runs on other machines
found (the ``checks`` of every results folder's ``MANIFEST.json``)."""

from __future__ import annotations

import re

from hydra.utils import get_class

from bench.api import compose
from bench.results.regress import MOVING_IMAGES, Tolerances, cross_machine_margin

from .sources import Rendered, Sources

BASELINE = "results/reference/regress/baseline.json"
#: The folders whose manifests may list checks, in the order they are shown.
FOLDERS = (
    "reference/regress",
    "reference/default_benchmark",
    "reference/paper_example",
    "reference/scenes_benchmark",
    "reference/catalogue",
    "reference/catalogue_heavy",
    "reference/catalogue_sanity",
)


def tolerances(src: Sources) -> Rendered:
    """Per metric of the committed baseline: its stability, one image's largest move, the margin
    that allows :data:`MOVING_IMAGES` of them, and what ``conf/regress/default.yaml`` allows."""
    base = src.json(BASELINE)
    tol = Tolerances.load(None)
    steps = dict(re.findall(r"metric\.(\w+)\.step=(\d+)", base["command"]))
    height, width = compose("model=shapes_cnn").model.input_size
    lines = [
        "| metric | stability | largest move of one image | needed for n = {n} | allowed |",
        "|---|---|---|---|---|",
    ]
    n = min(c["n"] for c in base["cells"])
    for metric in sorted({c["metric"] for c in base["cells"]}):
        cls = get_class(compose(f"metric=[{metric}]", resolve=False).metric[metric]["_target_"])
        stability = cls.stability_of()
        step = int(steps.get(metric, 224))
        largest = cross_machine_margin(stability, step / (height * width), 1) / MOVING_IMAGES
        if stability.value == "ranking":
            move = f"{step} / {height * width} = {largest:.3f} (a step of {height}×{width} pixels)"
        else:
            move = f"{largest:g}"
        need = cross_machine_margin(stability, step / (height * width), n)
        rule = tol.rule(metric)
        lines.append(
            f"| {metric} | {stability.value} | {move} | {need:.4f} | max({rule.abs:g}, "
            f"{rule.rel:g} × the mean) |"
        )
    lines[0] = lines[0].format(n=n)
    return Rendered("\n".join(lines))


def checks(src: Sources) -> Rendered:
    """What re-runs on other machines found, one line per check a manifest records."""
    lines = []
    for folder in FOLDERS:
        path = src.root / "results" / folder / "MANIFEST.json"
        if not path.is_file():
            continue
        for check in src.manifest(folder).get("checks", []):
            lines.append(
                f"- `results/{folder}/`, {check['cells']} (re-run {check['date']} on "
                f"{check['machine']}): {check['found']}."
            )
    return Rendered("\n".join(lines) or "- none recorded yet.")


def baseline_machine(src: Sources) -> Rendered:
    """The README's line on where the regression baseline was made."""
    base = src.json(BASELINE)
    m = base.get("machine") or {}
    where = f"{m['cpu']}, {m.get('cores')} cores" if m.get("cpu") else "an unrecorded machine"
    return Rendered(
        f"The baseline was made on {where} (git {base['versions'].get('git', '?')}, "
        f"{base['created'][:10]}); on another CPU a few images' scores may move "
        "([what may move across machines](stability.md): which scores, and the tolerances that follow)."
    )


BLOCKS = {
    "stability-tolerances": tolerances,
    "stability-checks": checks,
    "regress-baseline": baseline_machine,
}
