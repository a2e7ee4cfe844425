"""The speed benchmark (the package scripts/bench_speed/) in its smallest mode: the report is
written, with its header and numbers; the documented command launches it.

Never asserts on speed: only that every timed row holds positive numbers.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

from bench import ROOT

PACKAGE = ROOT / "scripts" / "bench_speed"


def load_script():
    """scripts/bench_speed/ imported as the package ``bench_speed`` (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "bench_speed", PACKAGE / "__init__.py", submodule_search_locations=[str(PACKAGE)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its submodules and dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def numbers(row: str) -> list[float]:
    return [float(v) for v in re.findall(r"(?<![\w.-])\d+\.\d+(?![\w.])", row)]


@pytest.mark.slow
def test_smallest_mode_writes_the_report(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "perf" / "cpu.md"
    argv = [
        "--quick",
        "--repeats=1",
        "--images=1",
        "--models=shapes_cnn",
        "--metrics=deletion,pointing_game",
        "--methods=",
        "--peers=occlusion,lime,kernel_shap",
        "--scaling=chunk",
        "--scaling-model=shapes_cnn",
        f"--out={out}",
    ]
    assert load_script().main(argv) == out
    assert torch.get_num_threads() == threads  # the thread count is restored
    text = out.read_text()
    assert text.startswith("# Speed on ")
    assert "Command: `python scripts/bench_speed.py --quick --repeats=1" in text
    for key in ("Device: cpu", "torch ", "captum ", "quantus ", "grad-cam ", "lime ", "shap "):
        assert key in text, key
    assert "Threads: 1" in text and "date 20" in text and "Load average" in text
    rows = {r.split("|")[3].strip(): r for r in text.splitlines() if r.startswith("| shapes_cnn |")}
    assert set(rows) == {"deletion", "pointing_game"}
    cells = [c.strip() for c in rows["deletion"].split("|")[1:-1]]
    assert int(cells[4]) > 0  # forward images
    assert all(float(c.split()[0]) > 0 for c in cells[6:10]), cells  # ours s, floor s, ratios
    assert float(rows["pointing_game"].split("|")[7]) > 0 and "no forwards" in rows["pointing_game"]
    peer = next(r for r in text.splitlines() if r.startswith("| occlusion | captum"))
    cells = [c.strip() for c in peer.split("|")[1:-1]]
    assert float(cells[2]) > 0 and float(cells[3]) > 0 and float(cells[5]) < 1e-4  # same values
    for key in ("lime", "kernel_shap"):  # the packages called directly, with our batch knob
        peer = next(r for r in text.splitlines() if r.startswith(f"| {key} | `"))
        cells = [c.strip() for c in peer.split("|")[1:-1]]
        assert float(cells[2]) > 0 and float(cells[3]) > 0 and float(cells[5]) < 1e-4, peer
    scaling = [r for r in text.splitlines() if r.startswith("| chunk |")]
    assert len(scaling) == 3
    for r in scaling:
        assert all(v > 0 for v in numbers(r)), r


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["scripts/bench_speed.py", "scripts/bench_speed"])
def test_the_documented_command_and_the_folder_run_the_package(entry):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's bench, whatever is installed
    done = subprocess.run(
        [sys.executable, entry, "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--peers" in done.stdout


def test_the_benchmark_imports_nothing_from_the_tests_and_stays_small():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] == "tests" for n in names), path
            if isinstance(node, ast.FunctionDef):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 80, f"{path.name}: {node.name} has {lines} lines"
