"""Launchers as config options: one sweep gives the same collated table under the basic, joblib,
submitit (local) and Ray (local) launchers, with every job in one sweep folder; the Slurm
launcher's config reaches submitit as the sbatch script it would submit (no Slurm needed); a
DataLoader with workers runs in a plain run and under joblib (hydra#964)."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.api import compose
from bench.config.launchers import SCHEMA_MATCHING, pin_sweep_dir, quiet_schema_matching
from bench.engine.build import build_dataset
from bench.engine.io import RECORD
from bench.engine.score import loader_context
from bench.results.collate import collate, find_job_dirs, summarise
from tests.conftest import run_bench

# The plugins' ConfigStore nodes share their names with our submitit_slurm.yaml and ray.yaml: Hydra
# 1.3's deprecation warning about it is silenced (test_our_launcher_configs_compose_quietly).
pytestmark = [
    pytest.mark.slow,  # every test here starts sweeps under a launcher: make test-all
    pytest.mark.filterwarnings(f"ignore:{SCHEMA_MATCHING}:UserWarning"),
]

#: 2 methods x 2 shards = 4 jobs, each scoring 2 metrics on 4 images.
SWEEP = [
    "-m",
    "method=gradcam,random",
    "metric=[deletion,pointing_game]",
    "dataset.num_shards=2",
    "dataset.shard=0,1",
    "dataset.limit=8",
    "batch_size=4",
    "cache=off",
]
#: Each launcher's overrides; each sweep gets its own paths.output_root, and so its own folder.
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "num_workers=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
    "ray": [
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.address=local",  # a new instance, not one `ray start` left running
        "hydra.launcher.ray.init.num_cpus=2",  # no `+`: ray.yaml declares the key
        "hydra.launcher.ray.init.include_dashboard=false",
    ],
}
#: The columns of the summary that must agree between launchers, and the numbers among them.
KEYS = ["model", "dataset", "method", "metric", "n", "direction", "excluded"]
VALUES = ["mean", "ci_low", "ci_high", "class_mean"]


def summary_of(sweep: Path) -> pd.DataFrame:
    """The collated summary of a sweep folder (bench.results.collate), in a stable row order."""
    summary = summarise(collate([sweep]).rows)
    return summary.sort_values(["method", "metric"]).reset_index(drop=True)


def check_sweep(sweep: Path) -> pd.DataFrame:
    """Every job of the sweep completed in its folder and the sweep collated itself at the end."""
    jobs = find_job_dirs([sweep])
    assert len(jobs) == 4, jobs
    for job in jobs:
        record = json.loads((job / RECORD).read_text())
        assert record["status"] == "completed", (job, record.get("error"))
        assert record["rows"] == 4 * 2 and (job / "scores.csv").is_file()
    assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()
    return summary_of(sweep)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep under Hydra's basic launcher, into a named sweep folder."""
    sweep = tmp_path_factory.mktemp("basic") / "sweep"
    res = run_bench([*SWEEP, f"hydra.sweep.dir={sweep}"])
    assert res.returncode == 0, res.stderr[-3000:]
    return sweep


@pytest.mark.slow
def test_the_basic_launcher_collates_the_sweep(reference):
    summary = check_sweep(reference)
    assert set(summary["method"]) == {"gradcam", "random"} and (summary["n"] == 8).all()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_each_launcher_gives_the_basic_launchers_table_in_one_sweep_folder(
    launcher, reference, tmp_path, monkeypatch
):
    root = tmp_path / "results"  # the sweep folder's default name: stamp and ${bench_uid:} below it
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # it would win over address=local
    res = run_bench([*SWEEP, *LAUNCHERS[launcher], f"paths.output_root={root}"], timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    sweeps = sorted((root / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps  # no job re-resolved ${now:} or ${bench_uid:} elsewhere
    got, want = check_sweep(sweeps[0]), summary_of(reference)
    pd.testing.assert_frame_equal(got[KEYS], want[KEYS])
    pd.testing.assert_frame_equal(got[VALUES], want[VALUES], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_dataloader_with_workers_works_in_a_plain_run(reference, tmp_path):
    out = tmp_path / "job"
    res = run_bench(
        [
            "method=gradcam",
            "metric=[deletion,pointing_game]",
            "dataset.limit=8",
            "batch_size=4",
            "cache=off",
            "num_workers=2",
            f"hydra.run.dir={out}",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / RECORD).read_text())["status"] == "completed"
    got = pd.read_csv(out / "scores.csv", dtype={"image_id": str})
    rows = collate([reference]).rows
    want = rows[rows["method"] == "gradcam"]
    key = ["image_id", "metric"]
    got, want = (d.sort_values(key).reset_index(drop=True) for d in (got, want))
    assert list(got["image_id"]) == list(want["image_id"]) and len(got) == 8 * 2
    pd.testing.assert_series_equal(got["value"], want["value"], rtol=1e-5, atol=1e-6)


def test_the_loader_starts_workers_with_a_context_every_launcher_accepts():
    assert loader_context(0) is None
    context = loader_context(2)
    assert context.get_start_method() == "loky"  # spawn and forkserver fail inside loky workers
    # a spawned worker unpickles the dataset
    for dataset in ("shapes", "digits"):
        cfg = compose(f"dataset={dataset}", "dataset.limit=4")
        _, selected, _ = build_dataset(cfg.dataset, cfg.seed)
        again = pickle.loads(pickle.dumps(selected))
        assert len(again) == len(selected) == 4
        a, b = again[3], selected[3]
        assert a.id == b.id and a.target == b.target and torch.equal(a.image, b.image)


SLURM = [
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=gpu",
    "hydra.launcher.gpus_per_node=1",
    "hydra.launcher.cpus_per_task=8",
    "hydra.launcher.mem_gb=32",
    "hydra.launcher.timeout_min=240",
    "hydra.launcher.array_parallelism=2",
    'hydra.launcher.srun_args=["--cpu-bind=none","--mpi=none"]',  # not in the plugin's schema
]


def test_the_slurm_launcher_hands_submitit_every_setting(tmp_path, monkeypatch):
    """Compose hydra/launcher=submitit_slurm, build Hydra's launcher from it and let it launch a
    4-job sweep into submitit's real Slurm executor, stopped where it would call sbatch."""
    import submitit

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for srun on the PATH
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    sweep = tmp_path / "sweep"
    cfg = compose(*SLURM, f"hydra.sweep.dir={sweep}", resolve=False, hydra=True)
    assert "pin_sweep_dir" in cfg.hydra.callbacks
    launcher = instantiate(cfg.hydra.launcher)
    assert launcher.params["srun_args"] == ["--cpu-bind=none", "--mpi=none"]
    seen: dict = {}

    class Job:
        def results(self) -> list:
            return [None]

    def map_array(executor, fn, *iterables):  # instead of writing the pickles and calling sbatch
        slurm = executor._executor
        slurm.parameters["map_count"] = len(iterables[0])
        seen["parameters"] = dict(slurm.parameters)
        seen["sbatch"] = slurm._make_submission_file_text(slurm._submitit_command_str, "uid")
        return [Job() for _ in iterables[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    jobs = [[f"method={m}", f"dataset.shard={s}"] for m in ("gradcam", "random") for s in (0, 1)]
    launcher.launch(jobs, initial_job_idx=0)
    p = seen["parameters"]
    assert p["partition"] == "gpu" and p["gpus_per_node"] == 1 and p["cpus_per_task"] == 8
    assert p["mem"] == "32GB" and p["time"] == 240 and p["array_parallelism"] == 2
    assert p["srun_args"] == ["--cpu-bind=none", "--mpi=none"]
    sbatch = seen["sbatch"]
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32GB",
        "#SBATCH --time=240",
        "#SBATCH --array=0-3%2",
        f"#SBATCH --output={sweep}/.submitit/%A_%a/%A_%a_0_log.out",
    ):
        assert line in sbatch.splitlines(), (line, sbatch)
    srun = next(ln for ln in sbatch.splitlines() if ln.startswith("srun "))
    assert "--cpu-bind=none --mpi=none" in srun and "submitit.core._submit" in srun


def test_the_cli_shows_the_slurm_and_ray_keys_without_a_plus():
    res = run_bench([*SLURM, "--cfg", "hydra", "--package", "hydra.launcher"])
    assert res.returncode == 0, res.stderr[-3000:]
    launcher = OmegaConf.create(res.stdout)
    assert launcher.srun_args == ["--cpu-bind=none", "--mpi=none"] and launcher.partition == "gpu"
    cfg = compose(
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.address=auto",
        "hydra.launcher.ray.init.num_cpus=4",
        "hydra.launcher.ray.remote.num_gpus=1",
        resolve=False,
        hydra=True,
    )
    init = cfg.hydra.launcher.ray.init
    assert (
        init.address == "auto"
        and init.num_cpus == 4
        and cfg.hydra.launcher.ray.remote.num_gpus == 1
    )
    # declared, so the plugin does not add its 75 MiB default, which ray.init(address=...) refuses
    assert "object_store_memory" in init and init.object_store_memory is None


def test_the_sweep_folder_is_resolved_where_the_sweep_is_launched(tmp_path, monkeypatch):
    """A job composed in another environment (a Ray cluster's worker) writes into the folder the
    launching process collates."""
    monkeypatch.setenv("BENCH_OUTPUT_ROOT", str(tmp_path / "here"))
    cfg = compose("hydra/launcher=ray", resolve=False, hydra=True)
    sweep = pin_sweep_dir(cfg)
    assert sweep.startswith(str(tmp_path / "here" / "sweeps")) and cfg.hydra.sweep.dir == sweep
    monkeypatch.setenv("BENCH_OUTPUT_ROOT", "elsewhere")
    job = compose(*cfg.hydra.overrides.hydra, "method=random", resolve=False, hydra=True)
    assert job.hydra.sweep.dir == sweep
    pinned = list(cfg.hydra.overrides.hydra)
    assert pin_sweep_dir(cfg) == sweep and list(cfg.hydra.overrides.hydra) == pinned  # once


def test_our_launcher_configs_compose_quietly():
    """hydra/launcher/submitit_slurm.yaml and ray.yaml share their names with the plugins'
    ConfigStore nodes, which Hydra 1.3 then validates them against, with a deprecation warning
    that bench.config.launchers.quiet_schema_matching silences."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_schema_matching()
        for launcher in ("submitit_slurm", "ray"):
            cfg = compose(f"hydra/launcher={launcher}", resolve=False, hydra=True)
            assert OmegaConf.get_type(cfg.hydra.launcher).__module__.startswith("hydra_plugins")
    assert not [w for w in seen if re.match(SCHEMA_MATCHING, str(w.message))]
