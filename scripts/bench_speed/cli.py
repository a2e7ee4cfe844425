"""The command line: parse, run the three sections, write the report."""

from __future__ import annotations

import argparse
import copy
import datetime
import sys
import time
from pathlib import Path

import torch

from . import __doc__ as DOC
from .machine import default_out, load
from .measure import PeakGrowth
from .overhead import overhead_cases, time_cases
from .peers import BUILDERS, peer_cases, time_peers
from .report import Run, report
from .scaling import scaling_points, time_points
from .settings import METHODS, METRICS, MODELS, PRESETS, SCALING_AXES, TORCHVISION
from .setups import make_setup

PEERS = tuple(BUILDERS)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DOC.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="few images and steps (~5-10 min on 2 CPU cores)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=256, help="the metrics' Context.chunk_size")
    p.add_argument(
        "--images", type=int, default=None, help="images per model (default: the mode's)"
    )
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--metrics", default=",".join(METRICS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--maps-method", default="gradient", help="the maps every metric scores")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--peer-model", default="shapes_cnn")
    p.add_argument("--scaling", default=",".join(SCALING_AXES), help="axes, or 'none'")
    p.add_argument("--scaling-model", default="resnet18")
    p.add_argument("--out", default=None, help="default results/perf/<device>.md")
    args = p.parse_args(argv)
    lists = {"models": MODELS, "metrics": None, "methods": None, "peers": PEERS}
    for key, known in {**lists, "scaling": SCALING_AXES}.items():
        value = [v for v in getattr(args, key).split(",") if v and v != "none"]
        bad = [v for v in value if known is not None and v not in known]
        if bad:
            p.error(f"--{key}: unknown {bad}; accepted: {', '.join(known)}")
        setattr(args, key, value)
    return args


def preset_of(args: argparse.Namespace) -> dict:
    """The mode's settings, with ``--images`` for every image count it names."""
    preset = PRESETS["quick" if args.quick else "full"]
    if args.images:
        preset = copy.deepcopy(preset)
        for k in ("small", "large"):
            preset[k]["images"] = args.images
        preset["peer_images"] = args.images
        for axis in ("size", "chunk"):
            preset["scaling"][axis]["images"] = args.images
    return preset


def measure(run: Run, preset: dict) -> None:
    """Build every case, peer and point (each warmed up once), then time them all."""
    args, device = run.args, run.device
    run.calibration = run.mem.calibrate() if args.scaling else None
    setups = [
        make_setup(n, args.metrics, args.maps_method, preset_size(preset, n), device)
        for n in args.models
    ]
    run.cases = overhead_cases(setups, args, preset, device)
    if args.peers:
        run.peer_setup = next((s for s in setups if s.name == args.peer_model), None)
        n = preset["peer_images"]
        if run.peer_setup is None or len(run.peer_setup.batch) != n:
            run.peer_setup = make_setup(
                args.peer_model, ["pointing_game"], args.maps_method, n, device
            )
        run.peers = peer_cases(run.peer_setup, args, preset, device)
    if args.scaling:
        run.points = scaling_points(args, preset, device, preset["large"]["images"])
    time_cases(run.cases, args.repeats, device)
    time_peers(run.peers, args.repeats, device)
    time_points(run.points, args.repeats, device, run.mem)


def preset_size(preset: dict, model: str) -> int:
    return preset["large" if model in TORCHVISION else "small"]["images"]


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run = Run(args, argv, device, date, load(), time.perf_counter(), PeakGrowth(device))
    try:
        measure(run, preset_of(args))
        text = report(run)
    finally:
        torch.set_num_threads(threads)
    out = Path(args.out) if args.out else default_out(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return out
