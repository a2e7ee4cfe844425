"""Section 3, scaling: deletion's seconds and peak memory against images, image size and chunk size."""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.core.context import Context

from .measure import PeakGrowth, med, recording, round_robin, timed
from .setups import configure, load_images


@dataclass
class Point:
    axis: str
    images: int
    size: int
    chunk: int
    steps: int
    run: Callable[[], Any] | None = None
    forwards: int = 0
    note: str = ""
    times: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)


def scaling_points(
    args: argparse.Namespace, preset: dict, device: torch.device, large_images: int
) -> list[Point]:
    """One point per value of each ``--scaling`` axis, the other two at the preset's values."""
    cfg = configure(args.scaling_model, ["deletion"], args.maps_method)
    model = instantiate(cfg.model).eval().to(device)
    method = instantiate(cfg.method)
    default_size = int(cfg.model.input_size[0])
    data: dict[tuple[int, int], tuple] = {}

    def inputs(n: int, size: int) -> tuple:
        """Images and their maps, made once per (images, size)."""
        if (n, size) not in data:
            batch = load_images(cfg, n, device, size)
            data[n, size] = (batch, method(model, batch.images, batch.targets))
        return data[n, size]

    points = []
    for axis in args.scaling:
        spec = preset["scaling"][axis]
        for v in spec["values"]:
            n = v if axis == "images" else spec["images"] or large_images
            size = v if axis == "size" else spec["size"] or default_size
            chunk = v if axis == "chunk" else spec["chunk"]
            points.append(Point(axis, n, size, chunk, spec["steps"]))
            try:
                prepare(points[-1], model, cfg.metric.deletion, *inputs(n, size), device)
            except Exception as err:
                points[-1].note = f"error: {type(err).__name__}: {err}"[:160]
    return points


def prepare(pt: Point, model, node, batch, maps, device: torch.device) -> None:
    """Deletion at the point's steps and chunk size, warmed up with its forwards counted."""
    from bench.metrics.faithfulness import Deletion

    kwargs = {k: v for k, v in OmegaConf.to_container(node).items() if not k.startswith("_")}
    metric = Deletion(**{**kwargs, "step": math.ceil(pt.size * pt.size / pt.steps)})

    def run() -> Any:
        return metric(Context(model=model, device=device, chunk_size=pt.chunk, seed=0), batch, maps)

    with recording(model) as calls:
        run()
    pt.forwards = sum(s[0] for s, _, _ in calls)
    pt.run = run


def time_points(points: list[Point], repeats: int, device: torch.device, mem: PeakGrowth) -> None:
    def step(pt: Point, rep: int) -> None:
        if pt.run is None:
            return
        wall, _, (peak, _) = timed(lambda: mem.measure(pt.run), device)
        pt.times.append(wall)
        if peak is not None:
            pt.peaks.append(peak)

    round_robin(points, step, repeats)


def scaling_table(points: list[Point]) -> list[str]:
    lines = [
        "| axis | images | size | chunk | steps | forward images | s | ms per forward image | "
        "peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        head = f"| {p.axis} | {p.images} | {p.size} | {p.chunk} | {p.steps} |"
        if p.run is None:
            lines.append(f"{head} {p.note} | | | |")
            continue
        per = 1e3 * statistics.median(p.times) / max(1, p.forwards)
        peak = "-"
        if p.peaks:
            peak = f"{statistics.median(p.peaks):.0f} ({min(p.peaks):.0f}-{max(p.peaks):.0f})"
        lines.append(f"{head} {p.forwards} | {med(p.times)} | {per:.2f} | {peak} |")
    return lines
