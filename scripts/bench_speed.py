"""Speed of the harness: our metrics and methods against the bare forward passes, against the peers, and scaling.

    python scripts/bench_speed.py --quick --threads 1      # ~5-10 min on 2 CPU cores -> results/perf/cpu.md
    python scripts/bench_speed.py --device cuda            # full mode -> results/perf/<gpu name>.md

Everything is measured in one run on the same models, images and maps, the tools interleaved
round robin over ``--repeats`` repeats (after one untimed warm-up call each), so ratios hold on a
noisy machine; tables quote the median and the min-max of the wall seconds.

1. Harness overhead. Each metric (its ``conf/metric/*.yaml`` defaults, shrunk by ``--quick``) and
   each perturbation method (``conf/method/*.yaml``) on the embedded CNN (112 px, the committed
   checkpoint) and torchvision ResNet-18 / ResNet-50 with random weights (224 px). A forward
   pre-hook on the model records the shape of every batch the call sends through it (and whether
   gradients were on); the *floor* replays exactly those batches, same count, same chunk sizes,
   through the same model with plain ``model(x)`` (``.sum().backward()`` for the batches that ran
   with gradients). ratio = ours / floor: 1.0 means the harness adds nothing to the forwards.
   On CUDA a second floor runs the same batches under ``torch.autocast(bfloat16)``.
2. Peers, same work, values compared: Quantus' PixelFlipping, PointingGame and MPRT, grad-cam's
   ROAD, the RISE and saliency-maps-metrics reference loops of tests/metrics/test_faithfulness.py,
   the ``lime`` and ``shap`` packages called directly and captum's Occlusion, each configured to
   the protocol of our metric as the peer-agreement tests do; the max |difference| of the values.
3. Scaling: deletion on ResNet-18, seconds and peak memory vs images, image size and chunk size.
   Peak memory: CUDA ``max_memory_allocated`` minus the allocation before the call; on a CPU the
   growth of the resident set during the call (``VmHWM`` after it minus ``VmRSS`` before it, the
   high-water mark reset through ``/proc/self/clear_refs`` and freed heap returned with
   ``malloc_trim`` first), checked against a known allocation.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from bench import ROOT
from bench.api import compose
from bench.core.batch import Batch, collate
from bench.core.context import Context
from bench.core.profiling import cpu_model
from bench.data.subset import SUBSET_KEYS
from bench.methods.base import batch_limit, preserve_model

MODELS = ("shapes_cnn", "resnet18", "resnet50")
TORCHVISION = {"resnet18", "resnet50"}
METRICS = (
    "deletion",
    "insertion",
    "pixel_flipping_morf",
    "road_morf",
    "road_abc",
    "dauc",
    "iauc",
    "efficient_mprt",
    "mprt",
    "infidelity",
    "max_sensitivity",
    "pointing_game",
)
METHODS = (
    "occlusion",
    "rise",
    "feature_ablation",
    "lime",
    "kernel_shap",
    "lime_batched",
    "kernel_shap_batched",
)
OPTIONAL_METHODS = {"lime_batched", "kernel_shap_batched"}  # methods/surrogate.py, when present
PEERS = (
    "pixel_flipping",
    "deletion",
    "insertion",
    "dauc",
    "road",
    "pointing_game",
    "mprt",
    "lime",
    "kernel_shap",
    "occlusion",
)
PACKAGES = ("torch", "torchvision", "captum", "quantus", "grad-cam", "lime", "shap")
SCALING_AXES = ("images", "size", "chunk")

#: What each mode runs. ``small`` = the embedded CNN, ``large`` = the torchvision models.
#: ``steps``: perturbation steps of the curve metrics (None = the config's); ``samples``: samples,
#: masks or superpixels of the methods (None = the config's); ``only``: metrics/methods per model
#: (None = all).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "small": {"images": 2, "steps": 16, "samples": 64, "perturb": 4},
        "large": {"images": 1, "steps": 4, "samples": 16, "perturb": 3},
        "only": {
            "resnet18": set(METRICS) - {"mprt", "road_abc", "iauc"} | set(METHODS),
            "resnet50": {"deletion", "road_morf", "occlusion", "rise"},
        },
        "peer_images": 2,
        "scaling": {
            "images": {"values": [1, 2, 4], "size": 224, "images": None, "chunk": 256, "steps": 4},
            "size": {
                "values": [112, 224, 448],
                "size": None,
                "images": 1,
                "chunk": 256,
                "steps": 4,
            },
            "chunk": {"values": [4, 16, 64], "size": 112, "images": 2, "chunk": None, "steps": 16},
        },
    },
    "full": {
        "small": {"images": 32, "steps": None, "samples": None, "perturb": None},
        "large": {"images": 4, "steps": None, "samples": None, "perturb": None},
        "only": {},
        "peer_images": 16,
        "scaling": {
            "images": {
                "values": [8, 16, 32, 64, 128, 256],
                "size": 224,
                "images": None,
                "chunk": 256,
                "steps": 56,
            },
            "size": {
                "values": [112, 224, 448],
                "size": None,
                "images": 8,
                "chunk": 256,
                "steps": 56,
            },
            "chunk": {
                "values": [16, 64, 256],
                "size": 224,
                "images": 8,
                "chunk": None,
                "steps": 56,
            },
        },
    },
}

# ------------------------------------------------------------------------------------ machine


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores visible)"


def default_out(device: torch.device) -> Path:
    """``results/perf/cpu.md``, or ``results/perf/<gpu name>.md`` (e.g. ``nvidia-h200.md``)."""
    if device.type != "cuda":
        stem = device.type
    else:
        stem = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")
    return ROOT / "results" / "perf" / f"{stem}.md"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def git_rev() -> str:
    """The short commit, with ``+ uncommitted changes`` when the working tree differs from it."""
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (rev or "unknown") + (" + uncommitted changes" if dirty else "")


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


# ------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float, Any]:
    """``(wall s, process CPU s, result)`` of one call; the device synchronised before and after
    (around the whole call, never per chunk)."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


@contextlib.contextmanager
def recording(model: torch.nn.Module) -> Iterator[list[tuple]]:
    """Every batch sent through ``model`` while inside: ``(shape, dtype, grad enabled)``.

    A forward pre-hook on the model itself, so calls from captum, lime, shap and the deep copies
    that randomisation checks make (they copy the hook) are all seen; removed on exit.
    """
    calls: list[tuple] = []

    def hook(_module: torch.nn.Module, args: tuple) -> None:
        x = args[0]
        calls.append((tuple(x.shape), x.dtype, torch.is_grad_enabled() and x.requires_grad))

    handle = model.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def floor(
    model: torch.nn.Module, calls: list[tuple], device: torch.device, bf16: bool = False
) -> Callable[[], None]:
    """The bare forwards of ``calls``: the same batches through ``model`` (random inputs made once,
    outside the timed call); batches that ran with gradients also get a ``sum().backward()``."""
    bank: dict[tuple, torch.Tensor] = {}
    for shape, dtype, _ in calls:
        if (shape, dtype) not in bank:
            bank[shape, dtype] = torch.randn(shape, dtype=dtype, device=device)

    def run() -> None:
        cast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        )
        with preserve_model(model), cast:
            for shape, dtype, grad in calls:
                x = bank[shape, dtype]
                if grad:
                    with torch.enable_grad():
                        model(x.detach().requires_grad_(True)).float().sum().backward()
                else:
                    with torch.no_grad():
                        model(x)

    return run


def med(values: list[float]) -> str:
    """``median (min-max)`` with a precision that suits the magnitude."""
    if not values:
        return "-"
    fmt = (lambda v: f"{v:.4f}") if max(values) < 0.1 else (lambda v: f"{v:.3f}")
    m = statistics.median(values)
    if len(values) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(values))}-{fmt(max(values))})"


def ratio(a: list[float], b: list[float]) -> str:
    if not a or not b or statistics.median(b) <= 0:
        return "-"
    return f"{statistics.median(a) / statistics.median(b):.2f}"


# ---------------------------------------------------------------------------------- memory


def _status_kb(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def _trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory growth (MiB) of one call: CUDA ``max_memory_allocated`` on a GPU; on a CPU the
    resident set's high-water mark (reset through ``/proc/self/clear_refs``) minus the resident
    set before the call, after ``gc`` and ``malloc_trim(0)``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "none"
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated - memory_allocated before"
        elif _status_kb("VmHWM") is not None and self._reset():
            self.method = "VmHWM after - VmRSS before (clear_refs 5, malloc_trim)"

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def measure(self, fn: Callable[[], Any]) -> tuple[float | None, Any]:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            out = fn()
            sync(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - before) / 2**20, out
        if self.method == "none":
            return None, fn()
        gc.collect()
        _trim()
        self._reset()
        before = _status_kb("VmRSS")
        out = fn()
        peak = _status_kb("VmHWM")
        return (peak - before) / 1024, out

    def calibrate(self, mib: int = 256) -> float | None:
        """The growth measured for a freshly touched ``mib`` MiB tensor (should read ~``mib``)."""

        def touch() -> None:
            t = torch.empty(mib * 2**18, device=self.device)  # float32
            t.fill_(1.0)
            del t

        return self.measure(touch)[0]


# ---------------------------------------------------------------------------------- set-up


@dataclass
class Setup:
    """One model with its images, maps (by the maps method) and its composed config."""

    name: str
    cfg: DictConfig
    model: torch.nn.Module
    batch: Batch
    maps: torch.Tensor
    method: Any
    large: bool


_COMPOSED: dict[tuple, DictConfig] = {}


def configure(name: str, metrics: list[str], method: str, *extra: str) -> DictConfig:
    """The job config of ``bench model=<name> method=<method> metric=[...]`` (a fresh copy;
    composed once per argument set)."""
    key = (name, tuple(metrics), method, extra)
    if key not in _COMPOSED:
        overrides = [f"model={name}", f"method={method}", f"metric=[{','.join(metrics)}]"]
        if name in TORCHVISION:
            overrides.append("model.weights=null")
        _COMPOSED[key] = compose(*overrides, *extra)
    return copy.deepcopy(_COMPOSED[key])


def load_images(cfg: DictConfig, n: int, device: torch.device, size: int | None = None) -> Batch:
    node = {k: v for k, v in cfg.dataset.items() if k not in SUBSET_KEYS}
    if size is not None:
        node["image_size"] = size
    data = instantiate(node)
    return collate([data[i] for i in range(n)]).to(device)


def make_setup(
    name: str, metrics: list[str], maps_method: str, n: int, device: torch.device
) -> Setup:
    cfg = configure(name, metrics or ["pointing_game"], maps_method)
    model = instantiate(cfg.model).eval().to(device)
    batch = load_images(cfg, n, device)
    method = instantiate(cfg.method)
    maps = method(model, batch.images, batch.targets)
    return Setup(name, cfg, model, batch, maps, method, name in TORCHVISION)


def shrink_metric(node: DictConfig, name: str, hw: int, knobs: dict) -> None:
    """The ``--quick`` settings of one metric config (in place): fewer steps / perturbations."""
    steps, perturb = knobs["steps"], knobs["perturb"]
    with open_dict(node):
        if steps and name in ("deletion", "insertion"):
            node.step = math.ceil(hw / steps)
        if steps and name.startswith("pixel_flipping"):
            node.step = hw // steps if hw % steps == 0 else math.ceil(hw / steps)
        if steps and name in ("dauc", "iauc", "dc", "ic"):
            node.max_steps = steps
        if perturb and name in ("infidelity", "max_sensitivity"):
            node.n_perturb_samples = perturb


def shrink_method(node: DictConfig, name: str, h: int, knobs: dict) -> None:
    """The ``--quick`` settings of one method config (in place): fewer samples / windows."""
    samples = knobs["samples"]
    if not samples:
        return
    with open_dict(node):
        if name == "occlusion":  # about `samples` windows
            side = max(1, round(h / math.sqrt(samples)))
            node.window = node.stride = side
        if name == "rise":
            node.n_masks = samples
        if name == "feature_ablation":
            node.n_segments = min(int(node.n_segments), samples)
        elif "n_segments" in node:  # a surrogate needs more samples than players
            node.n_segments = min(int(node.n_segments), max(2, samples // 4))
        if "n_samples" in node:
            node.n_samples = samples


def method_config(setup: Setup, name: str, knobs: dict, quick: bool) -> DictConfig:
    cfg = configure(setup.name, [], name)
    node = cfg.method
    if quick:
        shrink_method(node, name, setup.batch.images.shape[-2], knobs)
    return node


# -------------------------------------------------------------------------------- section 1


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


def overhead_cases(
    setups: list[Setup], args: argparse.Namespace, preset: dict, device: torch.device
) -> list[Case]:
    cases = []
    for s in setups:
        knobs = preset["large" if s.large else "small"]
        only = preset["only"].get(s.name)
        h, w = s.batch.images.shape[-2:]
        b = len(s.batch)
        for name in args.metrics:
            if only is not None and name not in only:
                continue
            case = Case(s.name, "metric", name, b)
            try:
                node = s.cfg.metric[name]
                if args.quick:
                    shrink_metric(node, name, h * w, knobs)
                metric = instantiate(node)

                def run(metric=metric, s=s) -> Any:
                    ctx = Context(
                        model=s.model,
                        device=device,
                        chunk_size=args.chunk_size,
                        seed=0,
                        method=s.method,
                    )
                    return metric(ctx, s.batch, s.maps)

                prepare(case, s, run, device)
            except Exception as err:  # a row that says why, not a failed benchmark
                case.run, case.note = None, f"error: {type(err).__name__}: {err}"[:160]
            cases.append(case)
        for name in args.methods:
            if only is not None and name not in only:
                continue
            case = Case(s.name, "method", name, b)
            try:
                node = method_config(s, name, knobs, args.quick)
            except Exception:
                if name in OPTIONAL_METHODS:
                    case.note = f"not available (no conf/method/{name}.yaml / methods/surrogate.py)"
                else:
                    raise
                cases.append(case)
                continue
            try:
                method = instantiate(node)

                def run(method=method, s=s) -> Any:
                    return method(s.model, s.batch.images, s.batch.targets)

                prepare(case, s, run, device)
                case.note = settings_note(node)
            except Exception as err:
                case.run, case.note = None, f"error: {type(err).__name__}: {err}"[:160]
            cases.append(case)
    return cases


def settings_note(node: DictConfig) -> str:
    keys = ("window", "stride", "n_masks", "n_segments", "n_samples")
    return ", ".join(f"{k} {node[k]}" for k in keys if k in node)


def run_round_robin(items: list, step: Callable[[Any, int], None], repeats: int) -> None:
    """``repeats`` rounds over ``items``: every item once per round, so drift hits all alike."""
    for rep in range(repeats):
        for item in items:
            step(item, rep)


def time_cases(cases: list[Case], repeats: int, device: torch.device) -> None:
    def step(case: Case, rep: int) -> None:
        if case.run is None:
            return
        order = ["ours", *case.floors] if rep % 2 == 0 else [*case.floors, "ours"]
        for key in order:
            fn = case.run if key == "ours" else case.floors[key]
            wall, cpu, _ = timed(fn, device)
            case.add(key, wall, cpu)

    run_round_robin(cases, step, repeats)


def overhead_table(cases: list[Case], device: torch.device) -> list[str]:
    cuda = device.type == "cuda"
    head = "| model | kind | name | images | forward images (with grad) | batch sizes | ours s | floor s | ratio | ratio (CPU time) |"
    rule = "|---|---|---|---:|---:|---|---:|---:|---:|---:|"
    if cuda:
        head = head.replace("| ratio (CPU time) |", "| bf16 floor s | ratio to bf16 floor |")
        rule = rule[:-5] + "---:|---:|"
    lines = [head, rule]
    for c in cases:
        if c.run is None:
            lines.append(f"| {c.model} | {c.kind} | {c.name} | {c.images} | | | {c.note} | | | |")
            continue
        t = c.times
        fwd = f"{c.forwards}" + (f" ({c.grad_forwards})" if c.grad_forwards else "")
        row = f"| {c.model} | {c.kind} | {c.name} | {c.images} | {fwd} | {c.chunks} | {med(t['ours'])} | "
        if c.forwards == 0:
            row += "no forwards | - | - |"
        else:
            row += f"{med(t['floor'])} | {ratio(t['ours'], t['floor'])} | "
            if cuda:
                row += f"{med(t['floor_bf16'])} | {ratio(t['ours'], t['floor_bf16'])} |"
            else:
                row += f"{ratio(t['ours.cpu'], t['floor.cpu'])} |"
        lines.append(row)
    return lines


# -------------------------------------------------------------------------------- section 2


@dataclass
class Peer:
    """Our call and the peer's on the same work; ``diff`` = max |ours - theirs| of the values."""

    name: str
    peer: str
    protocol: str
    ours: Callable[[], Any] | None = None
    theirs: Callable[[], Any] | None = None
    compare: Callable[[Any, Any], float] | None = None
    note: str = ""
    diff: float | None = None
    times: dict[str, list[float]] = field(default_factory=dict)


def tie_free(maps: torch.Tensor) -> torch.Tensor:
    """``maps`` plus a tiny seeded jitter (1e-6 of each map's range): no ties, so every peer ranks
    the pixels in the same order whatever its tie rule."""
    g = torch.Generator().manual_seed(123)
    jitter = torch.rand(maps.shape, generator=g).to(maps.device)
    span = (maps.flatten(1).amax(1) - maps.flatten(1).amin(1)).clamp_min(1e-12)
    return maps + 1e-6 * span.view(-1, 1, 1) * jitter


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def peer_cases(
    s: Setup, args: argparse.Namespace, preset: dict, device: torch.device
) -> list[Peer]:
    knobs = preset["large" if s.large else "small"]
    model, batch = s.model, s.batch
    images, targets = batch.images, batch.targets
    maps = tie_free(s.maps)
    b, _, h, w = images.shape
    hw = h * w
    with torch.no_grad():
        preds = model(images).argmax(1)
    dev = str(device)

    def ctx(seed: int = 0) -> Context:
        return Context(
            model=model, device=device, chunk_size=args.chunk_size, seed=seed, method=s.method
        )

    def metric_node(name: str) -> DictConfig:
        node = configure(s.name, [name], args.maps_method).metric[name]
        if args.quick:
            shrink_metric(node, name, hw, knobs)
        return node

    def curve_diff(ours: torch.Tensor, theirs: np.ndarray) -> float:
        return float(np.abs(_np(ours) - np.asarray(theirs, dtype=np.float64)).max())

    def build(key: str) -> Peer:
        if key == "pixel_flipping":
            p = Peer(
                "pixel_flipping_morf",
                "quantus.PixelFlipping",
                "fill 0 = perturb_baseline 0, features_in_step = 3 x step (Quantus ranks the map "
                "broadcast to the 3 channels; its assertion that features_in_step divides H x W, "
                "which no step can satisfy at 112 or 224 px, is lifted for the call), normalise/abs "
                "off, softmax; curves compared without our first point (the unchanged image)",
            )
            if not installed("quantus"):
                return p
            import quantus

            metric = instantiate(metric_node("pixel_flipping_morf"))
            a = np.repeat(_np(maps)[:, None], 3, 1)
            x, t = _np(images), targets.cpu().numpy()
            p.ours = lambda: metric(ctx(), batch, maps).curves[""]

            def theirs() -> np.ndarray:
                from quantus.helpers import asserts

                check = asserts.assert_features_in_step  # it checks H*W, the loop steps over C*H*W
                asserts.assert_features_in_step = lambda **kwargs: None
                try:
                    return _quantus_flipping()
                finally:
                    asserts.assert_features_in_step = check

            def _quantus_flipping() -> np.ndarray:
                q = quantus.PixelFlipping(
                    features_in_step=3 * metric.step,
                    perturb_baseline=float(metric.fill),
                    normalise=False,
                    abs=False,
                    disable_warnings=True,
                )
                out = q(model=model, x_batch=x, y_batch=t, a_batch=a, device=dev, softmax=True)
                return np.array(out)

            p.theirs = theirs
            p.compare = lambda o, r: curve_diff(o[:, 1:], r)
            return p
        if key in ("deletion", "insertion"):
            insertion = key == "insertion"
            p = Peer(
                key,
                "RISE reference loop (tests/metrics/test_faithfulness.py)",
                "one image, one forward per step, numpy stable argsort (eclique/RISE CausalMetric)",
            )
            try:
                sys.path.insert(0, str(ROOT))
                from tests.metrics.test_faithfulness import naive_rise_curve
            except Exception as err:
                p.note = f"not reusable: {type(err).__name__}: {err}"
                return p
            from bench.metrics.faithfulness import blur, rise_blur_kernel

            metric = instantiate(metric_node(key))
            substrate = blur(images, rise_blur_kernel()) if insertion else torch.zeros_like(images)
            p.ours = lambda: metric(ctx(), batch, maps).curves[""]
            p.theirs = lambda: np.stack(
                [
                    naive_rise_curve(
                        model, images[i], maps[i].cpu(), metric.step, substrate[i], insertion
                    )[0]
                    for i in range(b)
                ]
            )
            p.compare = curve_diff
            return p
        if key == "dauc":
            p = Peer(
                "dauc",
                "saliency-maps-metrics loop (tests/metrics/test_faithfulness.py)",
                "the package's MultiStepMetric loop re-implemented: one image, one forward per step",
            )
            if device.type != "cpu":
                p.note = "the reference loop mixes CPU masks with the images: CPU only"
                return p
            try:
                sys.path.insert(0, str(ROOT))
                from tests.metrics.test_faithfulness import naive_gomez
            except Exception as err:
                p.note = f"not reusable: {type(err).__name__}: {err}"
                return p
            metric = instantiate(metric_node("dauc"))
            p.ours = lambda: metric(ctx(), batch, maps).curves[""]
            p.theirs = lambda: np.stack(
                [
                    naive_gomez(model, images[i], maps[i], metric.max_steps, False, preds[i])[0]
                    for i in range(b)
                ]
            )
            p.compare = curve_diff
            return p
        if key == "road":
            p = Peer(
                "road_morf",
                "pytorch_grad_cam.metrics.road",
                "MoRF at 7 fractions, noise 0 on both (grad-cam draws unseeded noise), our tie "
                "noise 0, mean 0 / std 1 (grad-cam imputes the normalised tensor), our fractions "
                "set to grad-cam's percentile counts; softmax probability of the label, no diff",
            )
            if not installed("pytorch_grad_cam"):
                return p
            from pytorch_grad_cam.metrics.perturbation_confidence import (
                PerturbationConfidenceMetric,
                RemoveMostRelevantFirst,
            )
            from pytorch_grad_cam.metrics.road import NoisyLinearImputer
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

            from bench.metrics.road import FRACTIONS, RoadMoRF

            cams = _np(maps)
            percentiles = [round(100 * (1 - f)) for f in FRACTIONS]
            counts = []
            for q in percentiles:
                k = [
                    hw - int((torch.from_numpy(c) < np.percentile(c, q)).sum()) for c in cams
                ]  # grad-cam's own rule: removed = not (cam < percentile)
                if len(set(k)) > 1:
                    p.note = f"percentile counts differ between images ({sorted(set(k))})"
                counts.append(k[0])
            metric = RoadMoRF(
                mean=[0.0] * 3,
                std=[1.0] * 3,
                fractions=[(k + 0.5) / hw for k in counts],
                noise=0.0,
                tie_noise=0.0,
                target="label",
            )
            goals = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
            p.ours = lambda: metric(ctx(), batch, maps).curves["probability"]

            def theirs() -> np.ndarray:
                out = []
                for q in percentiles:
                    m = PerturbationConfidenceMetric(
                        RemoveMostRelevantFirst(q, NoisyLinearImputer(noise=0.0))
                    )
                    out.append(m(images, cams, goals, model, return_diff=False))
                return np.stack(out, 1)

            p.theirs = theirs
            p.compare = curve_diff
            return p
        if key == "pointing_game":
            p = Peer(
                "pointing_game",
                "quantus.PointingGame",
                "ours with tolerance 0, strict false, region masks; Quantus abs/normalise off "
                "(tie-free maps: Quantus counts any tied maximum)",
            )
            if not installed("quantus"):
                return p
            import quantus

            from bench.metrics.localisation import PointingGame

            metric = PointingGame(tolerance=0, strict=False, region="masks")
            x, a = _np(images), _np(maps)[:, None]
            m = batch.masks[:, None].float().cpu().numpy()
            y = targets.cpu().numpy()
            p.ours = lambda: metric(ctx(), batch, maps).scores[""]

            def theirs() -> np.ndarray:
                q = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)
                out = q(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=m, channel_first=True)
                return np.asarray(out)

            p.theirs = theirs
            p.compare = curve_diff
            return p
        if key == "mprt":
            p = Peer(
                "mprt",
                "quantus.MPRT",
                "conf/metric/mprt.yaml (top-down cascading, batch-norm stats reset, spearman of "
                "|m|/max|m|, label) vs MPRT(layer_order=top_down, seed 42); per-layer curves",
            )
            if not installed("quantus"):
                return p
            import quantus

            metric = instantiate(metric_node("mprt"))
            method = s.method
            x, t = _np(images), targets.cpu().numpy()

            def explain(model, inputs, targets, **kwargs):
                xi = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
                ti = torch.as_tensor(np.asarray(targets), device=device).long()
                return _np(method(model, xi, ti))

            p.ours = lambda: metric(ctx(seed=42), batch, s.maps).curves["spearman_abs"]

            def theirs() -> np.ndarray:
                q = quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True)
                out = q(
                    model=model,
                    x_batch=x,
                    y_batch=t,
                    a_batch=None,
                    explain_func=explain,
                    channel_first=True,
                    device=dev,
                )
                return np.array([out[k] for k in out if k != "original"]).T

            p.theirs = theirs
            p.compare = curve_diff
            return p
        if key in ("lime", "kernel_shap"):
            pkg = "lime" if key == "lime" else "shap"
            p = Peer(
                key,
                f"`{pkg}` package called directly",
                "the same SLIC superpixels, seeds, fill and batch size; the package's explainer "
                "per image as its README shows (our wrapper adds only the conversions)",
            )
            if not installed(pkg):
                return p
            node = method_config(s, key, knobs, args.quick)
            ours = instantiate(node)
            p.note = settings_note(node)
            p.ours = lambda: ours(model, images, targets)
            p.theirs = (bare_lime if key == "lime" else bare_shap)(ours, model, images, targets)
            p.compare = curve_diff
            return p
        if key == "occlusion":
            p = Peer(
                "occlusion",
                "captum.attr.Occlusion, its defaults",
                "same window, stride and fill; captum's default perturbations_per_eval = 1 (ours "
                "sends internal_batch_size occluded images per forward)",
            )
            from captum.attr import Occlusion

            node = method_config(s, "occlusion", knobs, args.quick)
            ours = instantiate(node)
            p.note = settings_note(node)
            p.ours = lambda: ours(model, images, targets)

            def theirs() -> torch.Tensor:
                a = Occlusion(model).attribute(
                    images,
                    sliding_window_shapes=(3, ours.window, ours.window),
                    strides=(3, ours.stride, ours.stride),
                    baselines=ours.fill,
                    target=targets,
                )
                return a[:, 0]

            p.theirs = theirs
            p.compare = lambda o, r: float((o - r).abs().max())
            return p
        raise KeyError(key)

    out = []
    for key in args.peers:
        try:
            p = build(key)
            if p.ours is None and not p.note:
                p.note = "not installed"
            if p.ours is not None:  # warm-up of both, and the values compared
                o, r = p.ours(), p.theirs()
                p.diff = p.compare(o, r)
        except Exception as err:
            p = Peer(key, "?", "", note=f"error: {type(err).__name__}: {err}"[:200])
        out.append(p)
    extra = batched_peers(s, args, knobs)
    return out + extra


def batched_peers(s: Setup, args: argparse.Namespace, knobs: dict) -> list[Peer]:
    """``lime_batched`` / ``kernel_shap_batched`` (methods/surrogate.py) against the packages."""
    out = []
    model, images, targets = s.model, s.batch.images, s.batch.targets
    for key in ("lime", "kernel_shap"):
        if key not in args.peers or f"{key}_batched" not in args.methods:
            continue
        pkg = "lime" if key == "lime" else "shap"
        p = Peer(
            f"{key}_batched", f"`{pkg}` package called directly", "same superpixels and samples"
        )
        try:
            node = method_config(s, f"{key}_batched", knobs, args.quick)
        except Exception:
            p.note = "not available (methods/surrogate.py absent)"
            out.append(p)
            continue
        try:
            ours = instantiate(node)
            ref = instantiate(method_config(s, key, knobs, args.quick))
            p.note = settings_note(node) + "; values differ by design (another sampler/solver)"
            p.ours = lambda ours=ours: ours(model, images, targets)
            p.theirs = (bare_lime if key == "lime" else bare_shap)(ref, model, images, targets)
            p.compare = lambda o, r: float(np.abs(_np(o) - _np(r)).max())
            p.diff = p.compare(p.ours(), p.theirs())
        except Exception as err:
            p.ours, p.note = None, f"error: {type(err).__name__}: {err}"[:200]
        out.append(p)
    return out


def bare_lime(cfg: Any, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """``lime.lime_image`` on each image with the settings of our ``Lime`` ``cfg`` (same seeds)."""
    from lime import lime_image

    from bench.core.rng import per_image_seeds
    from bench.methods.perturbation import superpixels

    def run() -> torch.Tensor:
        seg = superpixels(images, cfg.n_segments, cfg.compactness, cfg.slic_sigma).cpu().numpy()

        def classify(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2).to(images.device)
            with torch.no_grad():
                return model(x).softmax(-1).cpu().numpy()

        hwc = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
        out = np.zeros(seg.shape, dtype=np.float32)
        tqdm = lime_image.tqdm
        lime_image.tqdm = lambda *a, **k: tqdm(*a, **{**k, "disable": True})
        try:
            for i, seed in enumerate(per_image_seeds(images, cfg.seed)):
                t = int(targets[i])
                exp = lime_image.LimeImageExplainer(
                    kernel_width=cfg.kernel_width, random_state=seed
                ).explain_instance(
                    hwc[i],
                    classify,
                    labels=(t,),
                    top_labels=None,
                    hide_color=cfg.hide_color,
                    num_samples=cfg.n_samples,
                    batch_size=batch_limit(cfg.batch_size, images.device) or cfg.n_samples,
                    segmentation_fn=lambda _img, i=i: seg[i],
                )
                weights = np.zeros(seg[i].max() + 1, dtype=np.float32)
                for feature, wt in exp.local_exp[t]:
                    weights[feature] = wt
                out[i] = weights[seg[i]]
        finally:
            lime_image.tqdm = tqdm
        return torch.from_numpy(out)

    return run


def bare_shap(cfg: Any, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """``shap.KernelExplainer`` on each image with the settings of our ``KernelShap`` ``cfg``."""
    import shap

    from bench.core.rng import per_image_seeds
    from bench.methods.perturbation import superpixels

    def run() -> torch.Tensor:
        seg = superpixels(images, cfg.n_segments, cfg.compactness, cfg.slic_sigma).cpu().numpy()
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        h, w, c = hwc.shape[1:]
        out = np.zeros(seg.shape, dtype=np.float32)
        for i, seed in enumerate(per_image_seeds(images, cfg.seed)):
            x, sp, t = hwc[i], seg[i], int(targets[i])
            m = int(sp.max()) + 1
            # a masker per image: shap's caches the blur under id() of a temporary array
            masker = shap.maskers.Image(f"blur({cfg.blur_size},{cfg.blur_size})", shape=(h, w, c))
            blurred = masker(np.zeros(h * w * c, dtype=bool), x)[0][0]

            def value(z: np.ndarray, x=x, sp=sp, t=t, blurred=blurred) -> np.ndarray:
                keep = z[:, sp].astype(bool)[..., None]
                batch = np.where(keep, x[None], blurred[None]).astype(np.float32)
                res, size = [], batch_limit(cfg.batch_size, images.device) or len(batch)
                for k in range(0, len(batch), size):
                    xt = torch.from_numpy(batch[k : k + size]).permute(0, 3, 1, 2)
                    with torch.no_grad():
                        res.append(model(xt.to(images.device)).softmax(-1)[:, t].cpu().numpy())
                return np.concatenate(res)

            state = np.random.get_state()
            try:
                np.random.seed(seed)
                phi = shap.KernelExplainer(value, np.zeros((1, m))).shap_values(
                    np.ones((1, m)), nsamples=cfg.n_samples, silent=True, l1_reg=False
                )
            finally:
                np.random.set_state(state)
            out[i] = np.asarray(phi, dtype=np.float32).reshape(-1)[:m][sp]
        return torch.from_numpy(out)

    return run


def time_peers(peers: list[Peer], repeats: int, device: torch.device) -> None:
    def step(p: Peer, rep: int) -> None:
        if p.ours is None:
            return
        order = ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")
        for key in order:
            wall, _, _ = timed(getattr(p, key), device)
            p.times.setdefault(key, []).append(wall)

    run_round_robin(peers, step, repeats)


def peer_table(peers: list[Peer], model: str, images: int) -> list[str]:
    lines = [
        f"On {model}, {images} images, the maps of the maps method made tie-free (see below).",
        "",
        "| ours | peer | ours s | peer s | peer / ours | max abs diff | settings and protocol |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for p in peers:
        if p.ours is None:
            lines.append(f"| {p.name} | {p.peer} | {p.note} | | | | {p.protocol} |")
            continue
        t = p.times
        proto = p.protocol + (f" ({p.note})" if p.note else "")
        diff = "-" if p.diff is None else f"{p.diff:.1e}"
        lines.append(
            f"| {p.name} | {p.peer} | {med(t['ours'])} | {med(t['theirs'])} | "
            f"{ratio(t['theirs'], t['ours'])} | {diff} | {proto} |"
        )
    return lines


# -------------------------------------------------------------------------------- section 3


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
    from bench.metrics.faithfulness import Deletion

    name = args.scaling_model
    cfg = configure(name, ["deletion"], args.maps_method)
    model = instantiate(cfg.model).eval().to(device)
    method = instantiate(cfg.method)
    default_size = int(cfg.model.input_size[0])
    data: dict[tuple[int, int], tuple[Batch, torch.Tensor]] = {}
    points = []
    for axis in args.scaling:
        spec = preset["scaling"][axis]
        for v in spec["values"]:
            n = v if axis == "images" else spec["images"] or large_images
            size = v if axis == "size" else spec["size"] or default_size
            chunk = v if axis == "chunk" else spec["chunk"]
            pt = Point(axis, n, size, chunk, spec["steps"])
            try:
                key = (n, size)
                if key not in data:
                    batch = load_images(cfg, n, device, size)
                    data[key] = (batch, method(model, batch.images, batch.targets))
                batch, maps = data[key]
                metric = Deletion(
                    **{
                        **deletion_kwargs(cfg.metric.deletion),
                        "step": math.ceil(size * size / pt.steps),
                    }
                )

                def run(metric=metric, batch=batch, maps=maps, chunk=chunk) -> Any:
                    ctx = Context(model=model, device=device, chunk_size=chunk, seed=0)
                    return metric(ctx, batch, maps)

                with recording(model) as calls:
                    run()
                pt.forwards = sum(s[0] for s, _, _ in calls)
                pt.run = run
            except Exception as err:
                pt.note = f"error: {type(err).__name__}: {err}"[:160]
            points.append(pt)
    return points


def deletion_kwargs(node: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(node).items() if not k.startswith("_")}


def time_points(points: list[Point], repeats: int, device: torch.device, mem: PeakMemory) -> None:
    def step(pt: Point, rep: int) -> None:
        if pt.run is None:
            return
        wall = time.perf_counter()
        peak, _ = mem.measure(lambda: (pt.run(), sync(device)))
        pt.times.append(time.perf_counter() - wall)
        if peak is not None:
            pt.peaks.append(peak)

    run_round_robin(points, step, repeats)


def scaling_table(points: list[Point]) -> list[str]:
    lines = [
        "| axis | images | size | chunk | steps | forward images | s | ms per forward image | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        if p.run is None:
            lines.append(
                f"| {p.axis} | {p.images} | {p.size} | {p.chunk} | {p.steps} | {p.note} | | | |"
            )
            continue
        per = 1e3 * statistics.median(p.times) / max(1, p.forwards)
        peak = (
            f"{statistics.median(p.peaks):.0f} ({min(p.peaks):.0f}-{max(p.peaks):.0f})"
            if p.peaks
            else "-"
        )
        lines.append(
            f"| {p.axis} | {p.images} | {p.size} | {p.chunk} | {p.steps} | {p.forwards} | "
            f"{med(p.times)} | {per:.2f} | {peak} |"
        )
    return lines


# ------------------------------------------------------------------------------------ main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    for key, known in (
        ("models", MODELS),
        ("metrics", None),
        ("methods", None),
        ("peers", PEERS),
        ("scaling", SCALING_AXES),
    ):
        value = [v for v in getattr(args, key).split(",") if v and v != "none"]
        bad = [v for v in value if known is not None and v not in known]
        if bad:
            p.error(f"--{key}: unknown {bad}; accepted: {', '.join(known)}")
        setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    device = torch.device(args.device)
    preset = PRESETS["quick" if args.quick else "full"]
    if args.images:
        preset = copy.deepcopy(preset)
        for k in ("small", "large"):
            preset[k]["images"] = args.images
        preset["peer_images"] = args.images
        for axis in ("size", "chunk"):
            preset["scaling"][axis]["images"] = args.images
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    load_start, started = load(), time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        mem = PeakMemory(device)
        calibration = mem.calibrate() if args.scaling else None
        setups = []
        for name in args.models:
            n = preset["large" if name in TORCHVISION else "small"]["images"]
            setups.append(make_setup(name, args.metrics, args.maps_method, n, device))
        cases = overhead_cases(setups, args, preset, device)
        peers: list[Peer] = []
        peer_setup = None
        if args.peers:
            peer_setup = next((s for s in setups if s.name == args.peer_model), None)
            n = preset["peer_images"]
            if peer_setup is None or len(peer_setup.batch) != n:
                peer_setup = make_setup(
                    args.peer_model, ["pointing_game"], args.maps_method, n, device
                )
            peers = peer_cases(peer_setup, args, preset, device)
        points = (
            scaling_points(args, preset, device, preset["large"]["images"]) if args.scaling else []
        )
        time_cases(cases, args.repeats, device)
        time_peers(peers, args.repeats, device)
        time_points(points, args.repeats, device, mem)
        text = report(
            args,
            argv,
            device,
            date,
            load_start,
            started,
            cases,
            peers,
            peer_setup,
            points,
            mem,
            calibration,
        )
    finally:
        torch.set_num_threads(threads)
    out = Path(args.out) if args.out else default_out(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return out


def report(
    args,
    argv,
    device,
    date,
    load_start,
    started,
    cases,
    peers,
    peer_setup,
    points,
    mem,
    calibration,
) -> str:
    cuda = device.type == "cuda"
    versions = ", ".join(f"{d} {version(d)}" for d in PACKAGES)
    mode = "quick" if args.quick else "full"
    lines = [
        f"# Speed on {device_name(device)}",
        "",
        f"Command: `python scripts/bench_speed.py {' '.join(argv)}`".replace("  ", " "),
        "",
        f"- Device: {args.device}, {device_name(device)}; {platform.platform()}, Python {platform.python_version()}",
        f"- Versions: {versions}",
        f"- Threads: {args.threads} (torch.set_num_threads); git {git_rev()}; date {date}",
        f"- Load average (1/5/15 min) at start {load_start}, at the end {load()}; "
        f"the whole run took {time.perf_counter() - started:.0f} s",
        f"- Mode: {mode}; {args.repeats} repeats, interleaved round robin after one warm-up call "
        "each; figures are the median (min-max) of the wall seconds",
    ]
    if not cuda:
        lines.append(
            "- A shared machine: other jobs ran beside this one, so absolute seconds are noisy; the "
            "ratios (the call and its floor, or ours and the peer, run back to back on the same "
            "inputs in every round) are the figures to read. `ratio (CPU time)` uses this "
            "process's CPU seconds, which other jobs disturb less."
        )
    lines += [
        "",
        "## 1. Harness overhead: our call vs the bare forwards it makes",
        "",
        "The floor replays the batches the call sent through the model (recorded by a forward "
        "pre-hook: same count, same batch sizes, same model) as plain `model(x)` under `no_grad`, or "
        "`model(x).sum().backward()` for batches that ran with gradients (the methods re-run by "
        "MPRT / max-sensitivity). ratio = ours / floor; what lies above 1 is ranking, perturbing, "
        "imputing, surrogate fitting, copying models, numpy round trips. Metrics score the maps "
        f"of `{args.maps_method}` with `Context(chunk_size={args.chunk_size})`; configs are "
        "`conf/metric/*.yaml` and `conf/method/*.yaml`"
        + (
            ", shrunk in quick mode: "
            + "; ".join(
                f"{k} models {preset_text(PRESETS['quick'][k])}" for k in ("small", "large")
            )
            + "; ResNet-50 runs only "
            + ", ".join(sorted(PRESETS["quick"]["only"]["resnet50"]))
            + "; ResNet-18 skips "
            + ", ".join(sorted(set(METRICS) - PRESETS["quick"]["only"]["resnet18"]))
            + "."
            if args.quick
            else " as committed."
        ),
        "",
        *overhead_table(cases, device),
        "",
    ]
    if args.peers:
        lines += [
            "## 2. Peers: the same work, the values compared",
            "",
            *peer_table(
                peers,
                peer_setup.name if peer_setup else "-",
                len(peer_setup.batch) if peer_setup else 0,
            ),
            "",
            "peer / ours > 1: ours is faster. Values: curves (or per-image scores, or maps) of both, "
            "on maps with a 1e-6 relative jitter so that no peer's tie rule matters. Each peer is "
            "configured to our metric's protocol the way tests/metrics/test_quantus_*.py and "
            "tests/methods/test_references.py do.",
            "",
        ]
    if points:
        lines += [
            f"## 3. Scaling: deletion on {args.scaling_model}",
            "",
            "One axis at a time; the number of steps is held fixed (the step in pixels grows with "
            f"the image) and the chunk size is the metric's `Context.chunk_size`. Peak memory: {mem.method}"
            + (
                f"; calibration: a freshly touched 256 MiB tensor reads {calibration:.0f} MiB."
                if calibration is not None
                else "."
            ),
            "",
            *scaling_table(points),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def preset_text(knobs: dict) -> str:
    return (
        f"{knobs['images']} image(s), {knobs['steps']} curve steps, {knobs['samples']} "
        f"samples/masks/windows, {knobs['perturb']} perturbations"
    )


if __name__ == "__main__":
    main()
