"""Speed figures quoted in the docs, from the committed reports: ``results/perf/cpu.md`` (the
speed benchmark), ``results/perf/surrogates_cpu.md``, ``results/reference/road_speed.md`` and
``allocator_speed.md``; and the sanity checks' findings file."""

from __future__ import annotations

import re

from .sources import Rendered, Sources, number

PERF = "results/perf/cpu.md"
SURROGATES = "results/perf/surrogates_cpu.md"
ROAD = "results/reference/road_speed.md"
ALLOCATOR = "results/reference/allocator_speed.md"
SANITY = "results/reference/sanity_findings.md"


def _span(values: list[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    return (
        f"{lo:.{digits}f}"
        if f"{lo:.{digits}f}" == f"{hi:.{digits}f}"
        else f"{lo:.{digits}f}–{hi:.{digits}f}"
    )


def perf(src: Sources) -> Rendered:
    """The speed benchmark's paragraph: overhead ratios, peers, ROAD."""
    overhead, peers = src.tables(PERF)[:2]
    metric = [r for r in overhead if r["kind"] == "metric" and r["ratio"] != "-"]
    small = [
        number(r["ratio"])
        for r in metric
        if r["model"] == "shapes_cnn" and not r["name"].startswith("road")
    ]
    large = [
        number(r["ratio"])
        for r in metric
        if r["model"] != "shapes_cnn" and not r["name"].startswith("road")
    ]
    road_small = [
        number(r["ratio"])
        for r in metric
        if r["model"] == "shapes_cnn" and r["name"].startswith("road")
    ]
    road_large = [
        number(r["ratio"])
        for r in metric
        if r["model"] != "shapes_cnn" and r["name"].startswith("road")
    ]
    same = [r for r in peers if "differ by design" not in r["settings and protocol"]]
    diff = max(number(r["max abs diff"]) for r in same)
    speedups = {f"{r['peer']} ({r['ours']})": number(r["peer / ours"]) for r in same}
    named = [
        ("quantus.PixelFlipping", "Quantus pixel flipping"),
        ("quantus.MPRT", "Quantus MPRT"),
        ("pytorch_grad_cam.metrics.road", "grad-cam's ROAD"),
        ("quantus.PointingGame", "Quantus' pointing game"),
        (
            "captum.attr.Occlusion, its defaults",
            "captum's occlusion at its default of one perturbation per forward",
        ),
    ]
    quoted = ", ".join(
        f"{label} {next(v for k, v in speedups.items() if k.startswith(peer + ' ')):.1f}x"
        for peer, label in named
    )
    title = src.text(PERF).split("\n")[0].removeprefix("# Speed on ")
    seconds = re.search(r"the whole run took (\d+) s", src.text(PERF)).group(1)
    load = re.search(r"Load average \(1/5/15 min\) at start (\S+),", src.text(PERF)).group(1)
    road = {r["model"]: r for r in src.tables(ROAD)[0]}
    resnet = road["ResNet-18 (random weights)"]
    whole = re.search(
        r"ResNet-18 \(random weights\):.*?whole RoadABC metric ([\d.]+) ms per mask, of which forwards ([\d.]+)",
        src.text(ROAD),
    )
    embedded = road["shapes CNN (embedded)"]
    text = (
        f"In its last run on this project's CPU ({title}; {int(seconds) / 60:.0f} min; "
        f"load average {load} at the start, other jobs beside it: ratios move by a few tenths "
        f"between runs; `results/perf/cpu.md`) the metrics other than ROAD cost {_span(small)}x the bare "
        f"forwards they make on the embedded CNN (its forward is so cheap that ranking and perturbing "
        f"show) and {_span(large)}x on ResNet-18/50 (ratios under 1 are timing noise), and match the "
        f"peers to {diff:.0e}; the peers need {_span(list(speedups.values()))}x our time for the same "
        f"values ({quoted}). ROAD is the exception: its noisy linear imputation (a "
        f"multigrid-preconditioned solve per mask) costs {number(resnet['after / forward']):.2f}x the "
        f"forward it feeds on ResNet-18 at 224² ({number(resnet['imputation after']):.1f} ms per mask "
        f"against a {number(resnet['forward']):.1f} ms forward, one thread, in "
        f"`results/reference/road_speed.md`; {number(resnet['before / forward']):.2f}x before issue 14's "
        f"solver), so the whole metric takes {_span(road_large)}x its forwards on ResNet-18/50 in the "
        f"quick run ({float(whole.group(1)) / float(whole.group(2)):.1f}x in `road_speed.md`; a target of "
        f"1.3x is not reached on a CPU), and {_span(road_small, 0)}x on the embedded CNN, whose forward "
        f"is only {number(embedded['forward']):.1f} ms per image."
    )
    return Rendered(text.replace("e-0", "e-"))


def surrogates(src: Sources) -> Rendered:
    """The batched LIME / kernel SHAP speed-ups: peers in cpu.md, and surrogates_cpu.md."""
    overhead, peers = src.tables(PERF)[:2]
    batched = {r["ours"]: number(r["peer / ours"]) for r in peers if r["ours"].endswith("_batched")}
    cpu = [number(r["CPU speed-up"]) for r in src.tables(SURROGATES)[0]]
    floor = [number(r["ratio"]) for r in overhead if r["name"].endswith("_batched")]
    text = (
        f"On this project's 2-core CPU they are {_span(list(batched.values()))}x faster than the "
        f"packages at equal samples in the speed benchmark's quick run (`results/perf/cpu.md`: "
        + ", ".join(f"`{k}` {v:.2f}x" for k, v in sorted(batched.items()))
        + f") and {_span(cpu)}x in CPU seconds in `results/perf/surrogates_cpu.md` (more samples, "
        f"ResNet-18 too); they take {_span(floor, 2)}x the bare forwards they make (ratios under 1 "
        "are timing noise), so the model's forward is most of their time."
    )
    return Rendered(text)


def allocator(src: Sources) -> Rendered:
    """``keep_freed_memory``'s figures: RISE and LIME with glibc as shipped and kept."""
    rows = {(r["allocator"].split()[0], r["phase"]): r for r in src.tables(ALLOCATOR)[0]}
    rise_g, rise_k = rows[("glibc", "rise")], rows[("kept", "rise")]
    lime_g, lime_k = rows[("glibc", "lime")], rows[("kept", "lime")]
    faults = number(rise_g["minor page faults"].replace(",", "")) / 1e6
    command = re.search(r"`(python scripts/bench_allocator.py[^`]*)`", src.text(ALLOCATOR)).group(1)
    text = (
        "RISE on this project's 2-core machine spent as much CPU time in the kernel as in the model "
        f"(`{command}`: {rise_g['user CPU s']} s user + {rise_g['system CPU s']} s system, "
        f"{faults:.1f} M page faults, {rise_g['wall s']} s; kept: {rise_k['user CPU s']} s user, "
        f"{rise_k['system CPU s']} s system, {rise_k['minor page faults']} faults, {rise_k['wall s']} s; "
        f"LIME {lime_g['wall s']} s → {lime_k['wall s']} s; `results/reference/allocator_speed.md`)."
    )
    return Rendered(text)


def sanity_summary(src: Sources) -> Rendered:
    """The model-randomisation findings of ``sanity_findings.md`` quoted in the metrics section."""
    tables = src.tables(SANITY)
    spearman, ssim = tables[0], tables[2]
    col = lambda rows, layer, method: number(next(r for r in rows if r[""] == layer)[method])  # noqa: E731
    last = spearman[-1][""]
    n = re.search(r"the first (\d+) images", src.text(SANITY)).group(1)
    g = lambda method, layer: f"{col(spearman, layer, method):.2f}"  # noqa: E731
    text = (
        f"Under cascading randomisation (Spearman of |map|, {n} images) gradient falls from 1 to "
        f"{g('gradient', 'fc')} after the logits layer and {g('gradient', last)} when all layers are "
        f"random, Grad-CAM to {g('gradcam', 'fc')} and {g('gradcam', last)}; guided backprop is the "
        f"most robust to randomising the top layers ({g('guided_backprop', 'fc')} after the logits, "
        f"{g('guided_backprop', 'features.3.0')} after the last conv block) but, unlike the ImageNet "
        "finding of Adebayo et al., it does not stay edge-like once every layer is random "
        f"({g('guided_backprop', last)} Spearman, {col(ssim, last, 'guided_backprop'):.2f} SSIM) on this "
        "small 4-conv network."
    )
    return Rendered(text)


BLOCKS = {
    "speed-perf": perf,
    "speed-surrogates": surrogates,
    "speed-allocator": allocator,
    "sanity-findings": sanity_summary,
}
