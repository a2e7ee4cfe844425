"""What a job's phases cost, measured without slowing them: seconds, model passes, peak memory.

- :class:`Stopwatch`: seconds per key; the host clock on a CPU, CUDA events on a GPU (recorded on
  the stream, read once when the totals are asked for), so timing never synchronises the device.
- :class:`PassCounter`: images through a model's forward and backward passes, counted by one
  forward hook on its top module (a backward pass is a gradient reaching the model's output),
  whoever calls the model: a metric's chunked forward, captum, lime, a sanity check's copy.
- :class:`PeakMemory`: the peak memory of a stretch of work: CUDA's max allocated bytes on a GPU;
  on a CPU the process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``
  where the kernel allows it).
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class Stopwatch:
    """Seconds per key: ``with watch.measure("forward"): ...`` or ``token = watch.start()`` /
    ``watch.stop("forward", token)``. On CUDA each measurement is a pair of events on the current
    stream; :meth:`seconds` synchronises once and folds them into the totals."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self._seconds: dict[str, float] = defaultdict(float)
        self._events: dict[str, list[tuple[Any, Any]]] = defaultdict(list)

    def start(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, key: str, token: Any) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events[key].append((token, end))
        else:
            self._seconds[key] += time.perf_counter() - token

    @contextmanager
    def measure(self, key: str) -> Iterator[None]:
        token = self.start()
        try:
            yield
        finally:
            self.stop(key, token)

    def seconds(self) -> dict[str, float]:
        """Total seconds per key so far (one device synchronisation on CUDA, none on a CPU)."""
        if self._events:
            torch.cuda.synchronize(self.device)
            for key, pairs in self._events.items():
                self._seconds[key] += sum(a.elapsed_time(b) for a, b in pairs) / 1000.0
            self._events.clear()
        return dict(self._seconds)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((t for t in map(_first_tensor, value) if t is not None), None)
    if isinstance(value, dict):
        return next((t for t in map(_first_tensor, value.values()) if t is not None), None)
    return getattr(value, "logits", None) if hasattr(value, "logits") else None


class PassCounter:
    """Images through the forward and backward passes of the models it is attached to.

    The hook is a plain closure over this counter (not a bound method), so a ``copy.deepcopy`` of
    the model (the randomisation checks' copies) keeps counting into the same counter. ``paused``
    stops counting (a caller that counts its own passes, e.g. a compiled forward)."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0
        self.paused = 0

    def attach(self, model: nn.Module) -> Any:
        """Count ``model``'s passes; returns the hook handle (``.remove()`` detaches it)."""
        counter = self

        def backward_seen(n: int):
            def hook(_grad: Tensor) -> None:
                counter.backward += n

            return hook

        def forward_hook(_module: nn.Module, args: tuple, output: Any) -> None:
            if counter.paused:
                return
            x = _first_tensor(args)
            n = int(x.shape[0]) if x is not None and x.dim() > 0 else 1
            counter.forward += n
            out = _first_tensor(output)
            if out is not None and out.requires_grad and torch.is_grad_enabled():
                out.register_hook(backward_seen(n))

        return model.register_forward_hook(forward_hook)

    def snapshot(self) -> tuple[int, int]:
        return self.forward, self.backward


def _vm_hwm() -> int | None:
    """This process's peak resident set in bytes (Linux ``VmHWM``), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak memory of a stretch of work: ``reset()`` then ``peak()`` (bytes).

    ``kind`` says what is measured: ``cuda_max_allocated`` (tensors on the GPU, the caching
    allocator's own count), ``process_peak_rss`` (the process's resident peak since ``reset``: the
    kernel's high-water mark, reset by writing 5 to ``/proc/self/clear_refs``; it includes memory
    the allocator kept from earlier work) or ``process_peak_rss_since_start`` (where the mark
    cannot be reset: the peak of the whole process so far)."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if self.device.type == "cuda":
            self.kind = "cuda_max_allocated"
        elif self._clear_refs() and _vm_hwm() is not None:
            self.kind = "process_peak_rss"
        else:
            self.kind = "process_peak_rss_since_start"

    @staticmethod
    def _clear_refs() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.kind == "cuda_max_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.kind == "process_peak_rss":
            self._clear_refs()

    def peak(self) -> int:
        if self.kind == "cuda_max_allocated":
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _vm_hwm() if self.kind == "process_peak_rss" else None
        if hwm is not None:
            return hwm
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        return int(rss if sys.platform == "darwin" else rss * 1024)


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows: the machine
    line of the speed reports (``scripts/bench_*.py``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
