"""The CUDA branches of the profiling code, run on a CPU against a stand-in ``torch.cuda``.

No GPU has been lent to this project's sessions, so these check the logic only (events recorded
per measurement and read once, one synchronisation per ``seconds()``, the peak-memory calls and
the free-memory budget), not CUDA itself.
"""

from __future__ import annotations

import time

import pytest
import torch

import bench.core.context as context
from bench.core.profiling import PeakMemory, Stopwatch


class FakeEvent:
    """A ``torch.cuda.Event`` stand-in: ``record`` reads the host clock; ``elapsed_time`` raises
    unless the stream was synchronised after both records (CUDA's rule: reading an unfinished
    event fails)."""

    synced_at = -1.0
    made = 0

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        FakeEvent.made += 1
        self.at: float | None = None

    def record(self) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.at is not None and end.at is not None
        if FakeEvent.synced_at < end.at:
            raise RuntimeError("event not finished: the device was not synchronised")
        return (end.at - self.at) * 1000.0  # milliseconds, as CUDA's


@pytest.fixture
def fake_cuda(monkeypatch):
    calls: dict[str, int] = {"synchronize": 0, "reset": 0, "max": 0}

    def synchronize(_device=None) -> None:
        calls["synchronize"] += 1
        FakeEvent.synced_at = time.perf_counter()

    def reset(_device=None) -> None:
        calls["reset"] += 1

    def max_allocated(_device=None) -> int:
        calls["max"] += 1
        return 123 * 2**20

    FakeEvent.made, FakeEvent.synced_at = 0, -1.0
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", max_allocated)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _device=None: (8 * 2**30, 16 * 2**30))
    return calls


def test_the_cuda_stopwatch_never_synchronises_until_the_totals_are_read(fake_cuda):
    watch = Stopwatch("cuda")
    assert watch.cuda
    for _ in range(3):
        with watch.measure("forward"):
            time.sleep(0.01)
    token = watch.start()
    time.sleep(0.02)
    watch.stop("metric", token)
    assert fake_cuda["synchronize"] == 0 and FakeEvent.made == 8  # two events per measurement
    totals = watch.seconds()
    assert fake_cuda["synchronize"] == 1
    assert 0.03 <= totals["forward"] < 0.5 and 0.02 <= totals["metric"] < 0.5
    assert watch.seconds() == totals and fake_cuda["synchronize"] == 1  # nothing new: no sync
    with watch.measure("forward"):
        time.sleep(0.01)
    assert watch.seconds()["forward"] >= totals["forward"] + 0.01
    assert fake_cuda["synchronize"] == 2


def test_cuda_peak_memory_is_the_allocators_max(fake_cuda):
    peak = PeakMemory("cuda")
    assert peak.kind == "cuda_max_allocated"
    peak.reset()
    assert peak.peak() == 123 * 2**20
    assert fake_cuda["reset"] == 1 and fake_cuda["max"] == 1


def test_cuda_free_memory_and_the_auto_cap(fake_cuda):
    device = torch.device("cuda")
    assert context.available_memory(device) == 8 * 2**30
    assert context.auto_chunk(device) == context.AUTO_CAP["cuda"] == 1024
