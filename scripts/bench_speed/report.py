"""The Markdown report: the machine, then one section per part that ran."""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass, field

import torch

from .machine import device_name, git_rev, load, version
from .measure import PeakGrowth
from .overhead import Case, overhead_table
from .peers import Peer, peer_table
from .scaling import Point, scaling_table
from .settings import METRICS, PACKAGES, PRESETS, preset_text
from .setups import Setup


@dataclass
class Run:
    """What one benchmark run measured, and when and where."""

    args: argparse.Namespace
    argv: list[str]
    device: torch.device
    date: str
    load_start: str
    started: float
    mem: PeakGrowth
    calibration: float | None = None
    cases: list[Case] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    peer_setup: Setup | None = None
    points: list[Point] = field(default_factory=list)


def report(run: Run) -> str:
    lines = [*header(run), *overhead_section(run)]
    if run.args.peers:
        lines += peers_section(run)
    if run.points:
        lines += scaling_section(run)
    return "\n".join(lines).rstrip() + "\n"


def header(run: Run) -> list[str]:
    args, device = run.args, run.device
    versions = ", ".join(f"{d} {version(d)}" for d in PACKAGES)
    lines = [
        f"# Speed on {device_name(device)}",
        "",
        f"Command: `python scripts/bench_speed.py {' '.join(run.argv)}`".replace("  ", " "),
        "",
        f"- Device: {args.device}, {device_name(device)}; {platform.platform()}, "
        f"Python {platform.python_version()}",
        f"- Versions: {versions}",
        f"- Threads: {args.threads} (torch.set_num_threads); git {git_rev()}; date {run.date}",
        f"- Load average (1/5/15 min) at start {run.load_start}, at the end {load()}; "
        f"the whole run took {time.perf_counter() - run.started:.0f} s",
        f"- Mode: {'quick' if args.quick else 'full'}; {args.repeats} repeats, interleaved round "
        "robin after one warm-up call each; figures are the median (min-max) of the wall seconds",
    ]
    if device.type != "cuda":
        lines.append(
            "- A shared machine: other jobs ran beside this one, so absolute seconds are noisy; the "
            "ratios (the call and its floor, or ours and the peer, run back to back on the same "
            "inputs in every round) are the figures to read. `ratio (CPU time)` uses this "
            "process's CPU seconds, which other jobs disturb less."
        )
    return lines


def quick_settings() -> str:
    quick = PRESETS["quick"]
    return (
        ", shrunk in quick mode: "
        + "; ".join(f"{k} models {preset_text(quick[k])}" for k in ("small", "large"))
        + "; ResNet-50 runs only "
        + ", ".join(sorted(quick["only"]["resnet50"]))
        + "; ResNet-18 skips "
        + ", ".join(sorted(set(METRICS) - quick["only"]["resnet18"]))
        + "."
    )


def overhead_section(run: Run) -> list[str]:
    args = run.args
    intro = (
        "The floor replays the batches the call sent through the model (recorded by a forward "
        "pre-hook: same count, same batch sizes, same model) as plain `model(x)` under `no_grad`, or "
        "`model(x).sum().backward()` for batches that ran with gradients (the methods re-run by "
        "MPRT / max-sensitivity). ratio = ours / floor; what lies above 1 is ranking, perturbing, "
        "imputing, surrogate fitting, copying models, numpy round trips. Metrics score the maps "
        f"of `{args.maps_method}` with `Context(chunk_size={args.chunk_size})`; configs are "
        "`conf/metric/*.yaml` and `conf/method/*.yaml`"
        + (quick_settings() if args.quick else " as committed.")
    )
    table = overhead_table(run.cases, run.device)
    return [
        "",
        *section("1. Harness overhead: our call vs the bare forwards it makes", intro, table),
    ]


def section(title: str, intro: str | None, body: list[str], after: str | None = None) -> list[str]:
    """``## title``, its introduction, its table (``body``) and a closing paragraph, each followed
    by a blank line."""
    lines = [f"## {title}", ""]
    for part in (intro, body, after):
        if part is not None:
            lines += [*(part if isinstance(part, list) else [part]), ""]
    return lines


def peers_section(run: Run) -> list[str]:
    s = run.peer_setup
    table = peer_table(run.peers, s.name if s else "-", len(s.batch) if s else 0)
    after = (
        "peer / ours > 1: ours is faster. Values: curves (or per-image scores, or maps) of both, "
        "on maps with a 1e-6 relative jitter so that no peer's tie rule matters. Each peer is "
        "configured to our metric's protocol the way tests/metrics/test_quantus_*.py and "
        "tests/methods/test_references.py do."
    )
    return section("2. Peers: the same work, the values compared", None, table, after)


def scaling_section(run: Run) -> list[str]:
    calibration = (
        f"; calibration: a freshly touched 256 MiB tensor reads {run.calibration:.0f} MiB."
        if run.calibration is not None
        else "."
    )
    intro = (
        "One axis at a time; the number of steps is held fixed (the step in pixels grows with "
        "the image) and the chunk size is the metric's `Context.chunk_size`. Peak memory: "
        f"{run.mem.method}{calibration}"
    )
    title = f"3. Scaling: deletion on {run.args.scaling_model}"
    return section(title, intro, scaling_table(run.points))
