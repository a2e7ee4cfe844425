"""Shared fixtures: tiny models and tiny images, so every test runs in seconds on 2 CPU cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import ROOT
from bench.models import ModelMeta

# The cores shared among the pytest-xdist workers (`make test`: 2), at most two intra-op threads
# each; BENCH_TEST_THREADS overrides. Oversubscribed OpenMP threads make small ops (ROAD's solver
# steps) ~40x slower, so a worker never takes more than its share.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
torch.set_num_threads(int(os.environ.get("BENCH_TEST_THREADS", _THREADS)))

# The attribution cache is off in every test (and in the jobs tests launch), so that no test
# scores another test's maps; the cache tests switch it on with a folder of their own.
os.environ["BENCH_CACHE"] = "off"

SHAPES_CKPT = ROOT / "results" / "reference" / "models" / "shapes_cnn.pt"


class TinyCNN(nn.Module):
    """Two conv layers, global average pooling and a linear head (CAM-compatible)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    model.bench_meta = ModelMeta(
        name="tiny_cnn",
        weights="random",
        cam_layer="features.3",
        input_size=(16, 16),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        num_classes=3,
    )
    return model


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def run_captured(
    argv: list, cwd: Path = ROOT, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``argv`` in a subprocess from ``cwd``, its output captured as text; any exit status."""
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_ok(
    argv: list, cwd: Path = ROOT, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """:func:`run_captured`, which must exit 0 (else the end of its output is the message)."""
    done = run_captured(argv, cwd, env, timeout)
    assert done.returncode == 0, (
        f"{[str(a) for a in argv[:3]]} exited {done.returncode}:\n{done.stdout[-2000:]}\n"
        f"{done.stderr[-3000:]}"
    )
    return done


def run_bench(args: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the ``bench`` entry point in a subprocess (as a user would) and capture its output."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return run_captured([sys.executable, "-m", "bench", *args], cwd, env, timeout)
