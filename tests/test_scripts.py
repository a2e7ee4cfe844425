"""Every script in scripts/ runs: each at its smallest setting (one image, one method, one case),
as the documented command line launches it, into a temporary folder; a change that breaks one
fails here. The slowest are marked ``slow`` (CI runs them too). The speed benchmark's own test
is tests/test_bench_speed.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import ROOT
from tests.conftest import run_ok

SCRIPTS = ROOT / "scripts"
#: Scripts whose smoke test lives in another module.
ELSEWHERE = {"bench_speed.py": "tests/test_bench_speed.py"}


#: One torch thread; this checkout's packages first (a script's own folder, scripts/, is first on
#: its path, so an installed copy of bench elsewhere would be imported otherwise).
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HYDRA_FULL_ERROR": "0",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
}


def python(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python <argv>`` from the checkout's root, one torch thread; it must exit 0."""
    return run_ok([sys.executable, *argv], ROOT, ENV, timeout)


def run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python scripts/<script> <args>``, as its documented command line runs it."""
    return python(str(SCRIPTS / script), *args, timeout=timeout)


def written(path: Path, *needles: str) -> str:
    assert path.is_file(), f"{path} was not written"
    text = path.read_text()
    for needle in needles:
        assert needle in text, f"{needle!r} not in {path.name}"
    return text


def test_every_script_has_a_smoke_test():
    scripts = {p.name for p in SCRIPTS.glob("*.py")}
    tested = {name for name in globals() if name.startswith("test_")}
    missing = [
        s
        for s in sorted(scripts)
        if s not in ELSEWHERE and f"test_{s.removesuffix('.py')}_runs" not in tested
    ]
    assert not missing, f"scripts without a smoke test here: {missing}"


def test_bench_allocator_runs(tmp_path):
    run(
        "bench_allocator.py",
        *("--method", "random", "--metric", "pointing_game", "--images", "1", "--threads", "1"),
        *("--out", str(tmp_path / "a.md")),
    )
    written(tmp_path / "a.md", "| glibc as shipped | random |", "pointing_game on random's maps")


def test_bench_road_runs(tmp_path):
    out = tmp_path / "road.md"
    run(
        "bench_road.py",
        *("--images", "1", "--resnet-images", "1", "--threads", "1", "--repeat", "1"),
        *("--before-rev", "", "--out", str(out)),
    )
    written(out, "# ROAD imputation speed", "| shapes CNN (embedded) | 112x112 |", "ResNet-18")


@pytest.mark.slow
def test_bench_surrogates_runs(tmp_path):
    out = tmp_path / "s.md"
    run(
        "bench_surrogates.py",
        *("--threads", "1", "--repeats", "1", "--images", "1", "--samples", "16"),
        *("--resnet-images", "1", "--resnet-samples", "8", "--batch-size", "16"),
        *("--out", str(out)),
    )
    written(out, "| shapes_cnn 112 px | lime vs lime_batched | 1 x 16 |")


def test_check_reference_runs(tmp_path):
    sweep = tmp_path / "sweep"
    python(
        "-m",
        "bench",
        "-m",
        "method=random",
        "dataset.limit=1",
        "metric=[pointing_game]",
        "cache=off",
        f"hydra.sweep.dir={sweep}",
    )
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "summary.csv").write_text((sweep / "summary.csv").read_text())
    assert "reproduces" in run("check_reference.py", str(sweep), str(reference)).stdout


def test_cli_faults_runs(tmp_path):
    out = tmp_path / "faults.md"
    run(
        "cli_faults.py",
        "--generated",
        "0",
        "--only",
        "metric=4",
        "--workers",
        "1",
        "--out",
        str(out),
    )
    written(out, "| `metric=4` | one line | 2 | error: metric=4 is not valid; accepted: ")


def test_docs_blocks_runs():
    assert run("docs_blocks.py", "--check").returncode == 0
    assert "default-benchmark: README.md:" in run("docs_blocks.py", "--list").stdout


def test_mutants_runs():
    assert "road_abc_sign" in run("mutants.py", "--list").stdout


def test_sanity_findings_runs(tmp_path):
    out = tmp_path / "findings.md"
    run("sanity_findings.py", "--images", "1", "--threads", "1", "--out", str(out))
    written(out, "## Summary (cascading, spearman_abs)", "- gradcam: ", "## Data randomisation")


def test_train_shapes_runs(tmp_path):
    run(
        "train_shapes.py",
        "--epochs",
        "1",
        "--train-size",
        "16",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "m"),
    )
    assert (tmp_path / "m.pt").is_file()
    written(tmp_path / "m.json", '"test_accuracy"', '"train_size": 16')


@pytest.mark.slow
def test_train_digits_runs(tmp_path):
    run(
        "train_digits.py",
        "--epochs",
        "1",
        "--renders",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "d"),
    )
    written(tmp_path / "d.json", '"test_accuracy"', '"renders": 1')


def test_train_scenes_runs(tmp_path):
    out = tmp_path / "s"
    run(
        "train_scenes.py",
        *("--epochs", "1", "--train-size", "8", "--eval-size", "8", "--threads", "1"),
        *("--out", str(out)),
    )
    written(tmp_path / "s.json", '"mean_ap"')
    assert (tmp_path / "s.md").is_file()


def test_visualise_runs(tmp_path):
    run(
        "visualise.py",
        *("--n-images", "1", "--methods", "gradcam", "--classes", "0", "--steps", "1"),
        *("--out", str(tmp_path)),
    )
    assert {"maps.png", "features.png", "actmax_0.png"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.slow
def test_models_matrix_runs(tmp_path):
    pytest.importorskip("timm", reason="the timm extra (make test installs it)")
    out = tmp_path / "models.md"
    run("models_matrix.py", "--families", "timm_vit", "--images", "1", "--repeat", "1",
        "--threads", "1", "--out", str(out))  # fmt: skip
    written(out, "timm_vit", "gradcam")
