"""Section 1, harness overhead: each metric and method against the bare forwards it makes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.utils import instantiate

from bench.core.context import Context

from .measure import floor, med, ratio, recording, round_robin, sync, timed
from .settings import OPTIONAL_METHODS
from .setups import Setup, method_config, settings_note, shrink_metric


@dataclass
class Case:
    """One timed call and its floor, or a row that says why it did not run."""

    model: str
    kind: str
    name: str
    images: int
    run: Callable[[], Any] | None = None
    floors: dict[str, Callable[[], None]] = field(default_factory=dict)
    forwards: int = 0
    grad_forwards: int = 0
    chunks: str = ""
    note: str = ""
    times: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, wall: float, cpu: float) -> None:
        self.times.setdefault(key, []).append(wall)
        self.times.setdefault(key + ".cpu", []).append(cpu)

    def failed(self, err: Exception) -> None:
        """A row that says why, not a failed benchmark."""
        self.run, self.note = None, f"error: {type(err).__name__}: {err}"[:160]


def prepare(case: Case, setup: Setup, run: Callable[[], Any], device: torch.device) -> None:
    """Warm-up call with the recorder on; the floors of what it sent through the model."""
    with recording(setup.model) as calls:
        run()
    sync(device)
    case.run = run
    case.forwards = sum(s[0] for s, _, _ in calls)
    case.grad_forwards = sum(s[0] for s, _, g in calls if g)
    sizes = sorted({s[0] for s, _, _ in calls})
    case.chunks = ",".join(map(str, sizes[-3:])) + (" ..." if len(sizes) > 3 else "")
    case.floors["floor"] = floor(setup.model, calls, device)
    if device.type == "cuda":
        case.floors["floor_bf16"] = floor(setup.model, calls, device, bf16=True)
        case.floors["floor_bf16"]()  # its first autocast call: out of the figures


def metric_case(s: Setup, name: str, args: argparse.Namespace, knobs: dict, device) -> Case:
    case = Case(s.name, "metric", name, len(s.batch))
    try:
        node = s.cfg.metric[name]
        if args.quick:
            h, w = s.batch.images.shape[-2:]
            shrink_metric(node, name, h * w, knobs)
        metric = instantiate(node)

        def run() -> Any:
            ctx = Context(
                model=s.model, device=device, chunk_size=args.chunk_size, seed=0, method=s.method
            )
            return metric(ctx, s.batch, s.maps)

        prepare(case, s, run, device)
    except Exception as err:
        case.failed(err)
    return case


def method_case(s: Setup, name: str, args: argparse.Namespace, knobs: dict, device) -> Case:
    case = Case(s.name, "method", name, len(s.batch))
    try:
        node = method_config(s, name, knobs, args.quick)
    except Exception:
        if name not in OPTIONAL_METHODS:
            raise
        case.note = f"not available (no conf/method/{name}.yaml)"
        return case
    try:
        method = instantiate(node)
        prepare(case, s, lambda: method(s.model, s.batch.images, s.batch.targets), device)
        case.note = settings_note(node)
    except Exception as err:
        case.failed(err)
    return case


def overhead_cases(
    setups: list[Setup], args: argparse.Namespace, preset: dict, device: torch.device
) -> list[Case]:
    cases = []
    for s in setups:
        knobs = preset["large" if s.large else "small"]
        only = preset["only"].get(s.name)
        for kind, names in ((metric_case, args.metrics), (method_case, args.methods)):
            cases += [kind(s, n, args, knobs, device) for n in names if only is None or n in only]
    return cases


def time_cases(cases: list[Case], repeats: int, device: torch.device) -> None:
    def step(case: Case, rep: int) -> None:
        if case.run is None:
            return
        order = ["ours", *case.floors] if rep % 2 == 0 else [*case.floors, "ours"]
        for key in order:
            fn = case.run if key == "ours" else case.floors[key]
            wall, cpu, _ = timed(fn, device)
            case.add(key, wall, cpu)

    round_robin(cases, step, repeats)


def overhead_table(cases: list[Case], device: torch.device) -> list[str]:
    cuda = device.type == "cuda"
    head = (
        "| model | kind | name | images | forward images (with grad) | batch sizes | ours s "
        "| floor s | ratio | ratio (CPU time) |"
    )
    rule = "|---|---|---|---:|---:|---|---:|---:|---:|---:|"
    if cuda:
        head = head.replace("| ratio (CPU time) |", "| bf16 floor s | ratio to bf16 floor |")
        rule = rule[:-5] + "---:|---:|"
    return [head, rule, *(case_row(c, cuda) for c in cases)]


def case_row(c: Case, cuda: bool) -> str:
    if c.run is None:
        return f"| {c.model} | {c.kind} | {c.name} | {c.images} | | | {c.note} | | | |"
    t = c.times
    fwd = f"{c.forwards}" + (f" ({c.grad_forwards})" if c.grad_forwards else "")
    row = (
        f"| {c.model} | {c.kind} | {c.name} | {c.images} | {fwd} | {c.chunks} | {med(t['ours'])} | "
    )
    if c.forwards == 0:
        return row + "no forwards | - | - |"
    row += f"{med(t['floor'])} | {ratio(t['ours'], t['floor'])} | "
    if cuda:
        return row + f"{med(t['floor_bf16'])} | {ratio(t['ours'], t['floor_bf16'])} |"
    return row + f"{ratio(t['ours.cpu'], t['floor.cpu'])} |"
