"""Timing, the forwards a call makes, its floor, and the memory a call adds.

Seconds and peaks come from the library's profiling helpers (:mod:`bench.core.profiling`):
:class:`~bench.core.profiling.Stopwatch` for wall seconds (the host clock on a CPU, CUDA events
on a GPU) and :class:`~bench.core.profiling.PeakMemory` for peaks, turned here into the growth
of one call (:class:`PeakGrowth`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from bench.core.profiling import PeakMemory, Stopwatch
from bench.methods.base import preserve_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float, Any]:
    """``(wall s, process CPU s, result)`` of one call: the wall seconds by a
    :class:`~bench.core.profiling.Stopwatch` (read once after the call; the device synchronised
    before it, never per chunk), the CPU seconds of this process (the steadier figure on a shared
    machine)."""
    watch = Stopwatch(device)
    sync(device)
    cpu = time.process_time()
    with watch.measure("call"):
        out = fn()
    wall = watch.seconds()["call"]
    return wall, time.process_time() - cpu, out


def round_robin(items: list, step: Callable[[Any, int], None], repeats: int) -> None:
    """``repeats`` rounds over ``items``: every item once per round, so drift hits all alike."""
    for rep in range(repeats):
        for item in items:
            step(item, rep)


@contextlib.contextmanager
def recording(model: torch.nn.Module) -> Iterator[list[tuple]]:
    """Every batch sent through ``model`` while inside: ``(shape, dtype, grad enabled)``.

    A forward pre-hook on the model itself, so calls from captum, lime, shap and the deep copies
    that randomisation checks make (they copy the hook) are all seen; removed on exit. (The
    library's :class:`~bench.core.profiling.PassCounter` counts images; the floor needs shapes.)
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


def _resident_bytes() -> int:
    """This process's resident set now (``/proc/self/statm``'s second field: pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakGrowth:
    """How far memory rises above its level before one call, in MiB.

    The library's :class:`~bench.core.profiling.PeakMemory` (reset just before the call) gives the
    peak; it is the absolute peak (on a CPU: of everything the process holds, models and earlier
    caches included), so this subtracts what was in use before the call: CUDA's allocated bytes
    on a GPU, the resident set on a CPU (after ``gc`` and ``malloc_trim(0)``, so heap that earlier
    calls freed is not counted as the call's). None where the peak cannot be reset
    (``process_peak_rss_since_start``: a peak of the whole run says nothing of one call).
    """

    DESCRIPTIONS = {
        "cuda_max_allocated": "bench.core.profiling.PeakMemory (torch.cuda.max_memory_allocated) "
        "- memory_allocated before",
        "process_peak_rss": "bench.core.profiling.PeakMemory (VmHWM, reset by clear_refs 5) after "
        "- VmRSS before (malloc_trim)",
    }

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = PeakMemory(device)
        self.method = self.DESCRIPTIONS.get(self.peak.kind, "none")

    def in_use(self) -> int:
        if self.peak.kind == "cuda_max_allocated":
            return torch.cuda.memory_allocated(self.device)
        return _resident_bytes()

    def measure(self, fn: Callable[[], Any]) -> tuple[float | None, Any]:
        """``(growth MiB or None, result)`` of ``fn()``."""
        if self.method == "none":
            return None, fn()
        if self.device.type == "cuda":
            sync(self.device)
        else:
            gc.collect()
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.peak.reset()
        before = self.in_use()
        out = fn()
        sync(self.device)
        return (self.peak.peak() - before) / 2**20, out

    def calibrate(self, mib: int = 256) -> float | None:
        """The growth measured for a freshly touched ``mib`` MiB tensor (should read ~``mib``)."""

        def touch() -> None:
            t = torch.empty(mib * 2**18, device=self.device)  # float32
            t.fill_(1.0)
            del t

        return self.measure(touch)[0]
