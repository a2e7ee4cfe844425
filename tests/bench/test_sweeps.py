"""Sweeps through the ``bench`` CLI: folders that never collide, a re-launch that skips what is
done and recomputes what failed, and jobs that compose from the config as it was at launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import ROOT
from bench.config.validate import SNAPSHOT_DIR
from bench.engine.io import RECORD
from bench.results.collate import collate, summarise
from tests.bench._fixtures import jpeg

SWEEP = ("-m", "method=random,gradient", "dataset.limit=4", "metric=[deletion,pointing_game]")


def bench(cwd: Path, *args: str, wait: bool = True, **env: str):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{RECORD}"))}


@pytest.mark.slow
def test_two_sweeps_launched_in_the_same_second_get_two_complete_folders(tmp_path):
    out = tmp_path / "results"  # and one attribution cache, written by both at once
    env = {"BENCH_OUTPUT_ROOT": str(out), "BENCH_CACHE": "readwrite"}
    procs = [bench(tmp_path, *SWEEP, wait=False, **env) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    sweeps = sorted((out / "sweeps").iterdir())
    assert len(sweeps) == 2, sweeps
    tables = []
    for sweep in sweeps:
        recs = records(sweep)
        assert len(recs) == 2 and all(r["status"] == "completed" for r in recs.values())
        assert (sweep / "summary.csv").is_file() and (sweep / "multirun.yaml").is_file()
        tables.append(pd.read_csv(sweep / "summary.csv"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert set(tables[0]["method"]) == {"random", "gradient"}
    maps = list((out / "cache" / "maps").rglob("*.npz"))
    assert len(maps) == 8 and not list((out / "cache").rglob("*.tmp"))  # 2 methods x 4 images


def _folder_data(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(4):
        jpeg(root / f"{i}.jpg", 40, 40, seed=i)
    (root / "labels.csv").write_text("image,label\n" + "".join(f"{i}.jpg,{i}\n" for i in range(4)))
    return root


@pytest.mark.slow
def test_a_relaunched_sweep_skips_completed_jobs_and_recomputes_failed_ones(tmp_path):
    data = _folder_data(tmp_path / "data")
    good = (data / "2.jpg").read_bytes()
    (data / "2.jpg").write_bytes(good[: len(good) // 3])  # a broken image: that job fails
    sweep = tmp_path / "my_study"
    args = ["-m", "method=random,gradient", "dataset=folder", f"dataset.root={data}"]
    args += ["metric=[deletion]", f"hydra.sweep.dir={sweep}"]
    code, _, err = bench(tmp_path, *args)
    assert code == 1, err[-2000:]  # both jobs read the broken file: the sweep reports them
    first = records(sweep)
    assert {r["status"] for r in first.values()} == {"failed"}
    (data / "2.jpg").write_bytes(good)  # the user fixes the file and re-launches
    code, _, err = bench(tmp_path, *args)
    assert code == 0, err[-2000:]
    second = records(sweep)
    assert {r["status"] for r in second.values()} == {"completed"}
    code, out, err = bench(tmp_path, *args)  # once more: nothing left to do
    assert code == 0, err[-2000:]
    assert records(sweep) == second and (out + err).count("nothing to do") == 2
    assert len(collate([sweep]).rows) == 8  # the failed attempts were set aside, not collated


@pytest.mark.slow
def test_a_config_edited_during_a_sweep_does_not_change_its_later_jobs(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    sweep = tmp_path / "sweep"
    original = (conf / "method" / "gradient.yaml").read_text()
    proc = bench(
        tmp_path,
        "-cp",
        str(conf),
        "-m",
        "method=rise,gradient",
        "dataset.limit=2",
        "metric=[pointing_game]",
        f"hydra.sweep.dir={sweep}",
        wait=False,
    )
    deadline = time.time() + 200
    while not list(sweep.glob(f"0_*/{RECORD}")):  # the first job has started
        assert time.time() < deadline and proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    (conf / "method" / "gradient.yaml").write_text("_target_: bench.methods.gradient.Nope\n")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    recs = records(sweep)
    assert [r["status"] for r in recs.values()] == ["completed", "completed"]
    assert (sweep / SNAPSHOT_DIR / "method" / "gradient.yaml").read_text() == original
    assert sorted(summarise(collate([sweep]).rows)["method"]) == ["gradient", "rise"]


@pytest.mark.slow
def test_a_sweep_killed_part_way_and_relaunched_equals_a_clean_sweep(tmp_path):
    args = ["-m", "method=rise", "method.n_masks=100,150,200", "dataset.limit=8", "batch_size=2"]
    args += ["metric=[deletion,pointing_game]", "cache=readwrite"]
    clean = tmp_path / "clean"
    code, _, err = bench(tmp_path, *args, f"hydra.sweep.dir={clean}", f"paths.cache_root={clean}c")
    assert code == 0, err[-2000:]
    sweep, cache = tmp_path / "study", f"paths.cache_root={tmp_path / 'cache'}"
    proc = bench(tmp_path, *args, f"hydra.sweep.dir={sweep}", cache, wait=False)
    deadline = time.time() + 200
    while time.time() < deadline:  # SIGKILL the sweep once the second job has 2 batches done
        progress = list(sweep.glob("1_*/progress.json"))
        try:
            if progress and json.loads(progress[0].read_text())["batches"] >= 2:
                break
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    before = records(sweep)
    assert [r["status"] for r in before.values()] == ["completed", "running"]
    code, out, err = bench(tmp_path, *args, f"hydra.sweep.dir={sweep}", cache)
    assert code == 0, err[-2000:]
    after = records(sweep)
    first, second, third = after.values()
    assert first == list(before.values())[0]  # finished: not run again
    assert "nothing to do" in out + err
    kept = second["resumed"]["images_kept"]
    assert kept >= 4 and second["cache"]["hits"] + second["cache"]["misses"] == 8 - kept
    assert third["cache"]["misses"] == 8 and "resumed" not in third
    cols = ["model", "dataset", "method", "metric", "n", "mean", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(
        pd.read_csv(sweep / "summary.csv")[cols], pd.read_csv(clean / "summary.csv")[cols]
    )
    for a, b in zip(sorted(sweep.glob("*/scores.csv")), sorted(clean.glob("*/scores.csv"))):
        assert a.read_bytes() == b.read_bytes()
