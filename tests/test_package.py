"""The wheel stands on its own: built from the checkout, it carries the Hydra configs and the
committed checkpoints (``bench/_data``), and installed into a fresh venv outside the checkout,
``bench`` and ``bench-collate`` run from a folder of the user's and write there."""

from __future__ import annotations

import importlib.metadata
import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

from bench import ROOT
from bench.core import paths
from bench.core.errors import ConfigError
from tests.conftest import run_ok

DATA = "bench/_data/"
SHIPPED = (
    "conf/config.yaml",
    "conf/method/gradcam.yaml",
    "conf/metric/deletion.yaml",
    "conf/model/shapes_cnn.yaml",
    "results/reference/models/shapes_cnn.pt",
)


def _pip_version() -> tuple[int, ...]:
    parts = importlib.metadata.version("pip").split(".")[:2]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (where the dependencies are installed)."""
    dirs = [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"]]
    return list(dict.fromkeys(d for d in dirs if Path(d).is_dir()))


def test_relative_paths_are_the_shipped_copy_else_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = tmp_path.resolve()  # the working directory is reported resolved
    shipped, work = tmp_path / "shipped", tmp_path / "work"
    (shipped / "results" / "models").mkdir(parents=True)
    (shipped / "results" / "models" / "m.pt").write_bytes(b"")
    (work / "results" / "models").mkdir(parents=True)
    (work / "results" / "models" / "m.pt").write_bytes(b"")
    (work / "mydata").mkdir()
    monkeypatch.setattr(paths, "RESOURCES", shipped)
    monkeypatch.chdir(work)
    assert paths.resolve_path("results/models/m.pt") == shipped / "results/models/m.pt"
    assert paths.existing_dir("mydata", "dataset.root") == work / "mydata"
    assert paths.resolve_path("nothing") == work / "nothing"  # outputs: the working directory's
    assert paths.resolve_path(tmp_path) == tmp_path
    with pytest.raises(ConfigError) as err:
        paths.existing_dir("nothing", "dataset.root")
    assert str(err.value) == (
        f"dataset.root=nothing is not a folder (looked at {shipped / 'nothing'} and "
        f"{work / 'nothing'})."
    )
    with pytest.raises(ConfigError, match=r"model.checkpoint=mydata not found \(looked at "):
        paths.existing_file("mydata", "model.checkpoint")  # a folder is not the file asked for


def test_the_checkout_reads_its_own_configs() -> None:
    assert paths.IN_CHECKOUT and paths.RESOURCES == ROOT
    assert paths.CONF_DIR == ROOT / "conf"
    assert not paths.PACKAGE_DATA.exists(), "bench/_data is made in the wheel's build folder only"


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    # the wheel, built from the checkout as `pip wheel .` would (no download: --no-index)
    wheels = tmp_path / "wheels"
    run_ok(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--disable-pip-version-check", "-q", "-w", wheels, ROOT],
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("attribution_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in SHIPPED:
        assert DATA + rel in names, f"{rel} missing from the wheel"
    assert not any(n.startswith(DATA + "conf/local/") for n in names), "conf/local/ shipped"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"bench"}, tops  # methods/ and metrics/ are bench.methods and bench.metrics
    assert "bench/methods/cam.py" in names and "bench/metrics/road.py" in names

    # a fresh venv outside the checkout; the dependencies already installed here are made
    # visible by a .pth naming their folders (a plain path entry: the .pth files there, the
    # checkout's editable-install hook among them, are not run)
    venv = tmp_path / "venv"
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    if _pip_version() >= (22, 3):  # this pip installs into the new venv (pip --python)
        run_ok([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
        pip = [sys.executable, "-m", "pip", "--python", python]
    else:  # an older pip: the venv gets its own (ensurepip, a few seconds more)
        run_ok([sys.executable, "-m", "venv", venv], cwd=tmp_path)
        pip = [python, "-m", "pip"]
    run_ok(
        [*pip, "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q", wheel],
        cwd=tmp_path,
    )
    purelib = Path(
        run_ok(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).stdout.strip()
    )
    (purelib / "_main_env_deps.pth").write_text("\n".join(_site_dirs()) + "\n")

    work = tmp_path / "work"  # the user's folder
    (work / "mydata").mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP") and not k.startswith("BENCH_")
    }
    env.update(
        PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        OMP_NUM_THREADS=str(torch.get_num_threads()),
        HYDRA_FULL_ERROR="0",
    )

    # the installed package is the one imported, and it reads its own data, not the checkout's
    probe = run_ok(
        [
            python,
            "-c",
            "import json, bench, bench.core.paths as p; print(json.dumps({"
            "'file': bench.__file__, 'checkout': p.IN_CHECKOUT, 'conf': str(p.CONF_DIR), "
            "'ckpt': str(p.resolve_path('results/reference/models/shapes_cnn.pt')), "
            "'mine': str(p.resolve_path('mydata')), 'missing': str(p.resolve_path('nothing'))}))",
        ],
        work,
        env,
    )
    where = json.loads(probe.stdout)
    site_dir = purelib.resolve()
    assert Path(where["file"]).resolve().is_relative_to(site_dir), where
    assert not where["checkout"], where
    assert Path(where["conf"]) == site_dir / DATA / "conf", where
    assert Path(where["ckpt"]) == site_dir / DATA / "results/reference/models/shapes_cnn.pt"
    assert Path(where["mine"]) == work.resolve() / "mydata", where  # a user path: the CWD's
    assert Path(where["missing"]) == work.resolve() / "nothing", where

    # the default benchmark (one job, 2 images): the table printed, the run under the CWD; a
    # user's own methods.py and metrics.py in the working folder and on PYTHONPATH change nothing
    for name in ("methods", "metrics"):
        (work / f"{name}.py").write_text(
            f"raise SystemExit('the user\\'s {name}.py was imported')\n"
        )
    env["PYTHONPATH"] = str(work)
    one = run_ok([bindir / "bench", "dataset.limit=2"], work, env)
    assert "| shapes_cnn | shapes | gradcam | 2 |" in one.stdout, one.stdout
    (run_dir,) = (work / "results" / "runs").iterdir()
    assert (run_dir / "scores.csv").is_file()
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "completed", record["status"]
    assert record["versions"]["git"] == "unknown", record["versions"]  # no checkout's commit
    assert str(site_dir / DATA / "results") in json.dumps(record["model"]), record["model"]

    # a sweep, collated at its end, then collated again by hand
    sweep = run_ok([bindir / "bench", "-m", "method=gradcam,random", "dataset.limit=2"], work, env)
    (sweep_dir,) = (work / "results" / "sweeps").iterdir()
    assert (sweep_dir / "summary.md").is_file(), sweep.stdout + sweep.stderr
    collated = run_ok([bindir / "bench-collate", sweep_dir], work, env)
    for method in ("gradcam", "random"):
        assert f"| shapes_cnn | shapes | {method} | 2 |" in collated.stdout, collated.stdout


@pytest.mark.slow
def test_a_users_methods_py_and_metrics_py_do_not_shadow_ours(tmp_path: Path) -> None:
    """In the checkout (an editable install): a user's ``methods.py`` and ``metrics.py`` beside
    their model module, in the working folder and on PYTHONPATH, are never imported by the tool
    (its packages are ``bench.methods`` and ``bench.metrics``)."""
    for name in ("methods", "metrics"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s {name}.py')\n")
    (tmp_path / "mynet.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3, padding=1)\n        self.fc = nn.Linear(4, 8)\n\n"
        "    def forward(self, x):\n        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    done = subprocess.run(
        [sys.executable, "-m", "bench", "model=custom", "trust_code=true", "model.module=mynet.Net",
         "model.mean=[0.5,0.5,0.5]", "model.std=[0.25,0.25,0.25]", "model.input_size=[112,112]",
         "method=gradcam", "dataset.limit=2", "metric=[deletion]", f"hydra.run.dir={tmp_path / 'run'}",
         f"paths.output_root={tmp_path}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| custom | shapes | gradcam | 2 |" in done.stdout, done.stdout
