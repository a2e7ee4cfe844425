"""What each phase of a job costs: seconds, images per second, model passes and peak memory.

``with timer("attribute"): ...`` measures one phase of one batch; :meth:`Timer.batch` marks the
batches, so the first ``warmup_batches`` (CUDA context, cuDNN autotuning, a compile) are left out
of the rates. Nothing here synchronises a GPU while the job runs: phases are timed with CUDA
events (:class:`bench.core.profiling.Stopwatch`), read once at the end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from bench.core.profiling import PassCounter, PeakMemory, Stopwatch

#: Stopwatch key suffix of the measurements made after the warm-up batches.
_TIMED = "#timed"


class Timer:
    """Accumulates, per named phase, seconds (all, and after the warm-up batches), the images
    through the model's forward and backward passes, and the peak memory."""

    def __init__(self, device: torch.device | None = None, warmup_batches: int = 0) -> None:
        self.device = device
        self.watch = Stopwatch(device)
        self.passes = PassCounter()
        self.memory = PeakMemory(device)
        self.warmup_batches = int(warmup_batches)
        self.batches = 0  # batches started so far
        self.images = 0
        self.images_timed = 0
        self._in_batch = False
        self._counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._peaks: dict[str, int] = {}
        self._batch_phases: set[str] = set()

    @property
    def timed(self) -> bool:
        """Whether the current batch counts towards the rates (it is past the warm-up)."""
        return self._in_batch and self.batches > self.warmup_batches

    @contextmanager
    def batch(self, images: int) -> Iterator[None]:
        """Mark one batch of ``images`` images (the phases inside it are per-batch work)."""
        self.batches += 1
        self._in_batch = True
        try:
            yield
        finally:
            self._in_batch = False
        self.images += images
        if self.batches > self.warmup_batches:
            self.images_timed += images

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        timed = self.timed
        if self._in_batch:
            self._batch_phases.add(phase)
        forward, backward = self.passes.snapshot()
        self.memory.reset()
        token = self.watch.start()
        try:
            yield
        finally:
            self.watch.stop(phase, token)
            if timed:
                self.watch.stop(phase + _TIMED, token)
            counts = self._counts[phase]
            counts[0] += self.passes.forward - forward
            counts[1] += self.passes.backward - backward
            self._peaks[phase] = max(self._peaks.get(phase, 0), self.memory.peak())

    def as_dict(self) -> dict[str, float]:
        """Seconds per phase, all batches (the record's ``timings``)."""
        return {k: round(v, 4) for k, v in self.watch.seconds().items() if _TIMED not in k}

    def throughput(self) -> dict[str, Any]:
        """The record's ``throughput``: per phase, seconds after the warm-up and images/s over
        them, forward and backward passes (images through the model) in all and per image, and
        the peak memory in MiB. With no batch past the warm-up, the rates use every batch."""
        seconds = self.watch.seconds()
        warm = self.warmup_batches if self.images_timed else 0
        images = self.images_timed if self.images_timed else self.images
        phases: dict[str, Any] = {}
        for phase, (forward, backward) in self._counts.items():
            per_batch = phase in self._batch_phases
            s = seconds.get(phase + _TIMED if warm and per_batch else phase, 0.0)
            info: dict[str, Any] = {
                "seconds": round(s, 4),
                "forward_passes": forward,
                "backward_passes": backward,
                "peak_memory_mib": round(self._peaks.get(phase, 0) / 2**20, 1),
            }
            if per_batch and images and self.images:
                info["images_per_second"] = round(images / s, 3) if s > 0 else None
                info["forward_per_image"] = round(forward / self.images, 3)
                info["backward_per_image"] = round(backward / self.images, 3)
            phases[phase] = info
        return {
            "warmup_batches": warm,
            "batches": self.batches,
            "images": self.images,
            "images_timed": images,
            "memory": self.memory.kind,
            "clock": "cuda_events" if self.watch.cuda else "host",
            "phases": phases,
        }
