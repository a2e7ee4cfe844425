"""keep_freed_memory: large temporaries stop page-faulting once freed memory stays in the heap."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import run_bench

PROBE = r"""
import resource, torch
from bench.engine.allocator import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        x = torch.ones(8 * 2**20)  # 32 MiB, allocated and freed each time as a metric's chunk is
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = faults()
state = keep_freed_memory()
faults()  # the first allocation after the switch grows the heap once
kept = faults()
print(plain, kept, state)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning")
def test_freed_chunks_are_reused_instead_of_faulted_in_again():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    plain, kept, state = out.stdout.split(maxsplit=2)
    assert state.startswith("glibc"), state
    # 10 x 32 MiB = 81,920 pages of 4 KiB faulted in without; a few hundred at most with
    assert int(plain) > 40_000, plain
    assert int(kept) < 2_000, kept


@pytest.mark.slow
def test_run_records_the_allocator_choice(tmp_path):
    out = run_bench(
        [
            "method=random",
            "metric=[sparseness]",
            "dataset.limit=2",
            "keep_freed_memory=false",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["device"]["allocator"] == "system"
    assert record["config"]["keep_freed_memory"] is False
