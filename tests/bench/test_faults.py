"""Fault injection: every way a job can end or its files can be damaged, then collation.

After each fault the collated table equals the table of a clean run, or the tool says exactly
why not: one line naming the folder (exit 2), or the incomplete job and the rows it kept (exit 1).
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from bench import ROOT
from bench.api import compose
from bench.cli.collate import main as collate_main
from bench.core.batch import Batch
from bench.core.context import Context
from bench.core.errors import ConfigError
from bench.engine.io import LOCK, RECORD, SCORES
from bench.engine.run import run
from bench.results.collate import collate, summarise

JOB = ("method=random", "dataset.limit=6", "batch_size=2", "metric=[deletion,pointing_game]")


def job(out: Path, *overrides: str) -> dict:
    """One tiny job in-process (the real composition and runner)."""
    return run(compose(*JOB, *overrides, resolve=False), out)


def table(folder: Path) -> pd.DataFrame:
    """The summary of a folder without the columns that name where it ran."""
    return summarise(collate([folder]).rows).drop(columns=[], errors="ignore")


def collate_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = collate_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean") / "job"
    record = job(folder, "save_maps=true")
    assert record["status"] == "completed" and set(record["files"]) == {
        "scores.csv",
        "curves.npz",
        "maps.npz",
    }
    return folder


# --- damaged files --------------------------------------------------------------------------------


def _cut_mid_row(d: Path) -> None:
    data = (d / SCORES).read_bytes()
    (d / SCORES).write_bytes(data[: len(data) - 7])


def _drop_rows(d: Path) -> None:
    lines = (d / SCORES).read_text().splitlines(keepends=True)
    (d / SCORES).write_text("".join(lines[:-3]))


def _garbage_value(d: Path) -> None:
    df = pd.read_csv(d / SCORES, dtype=str, keep_default_na=False)
    df.loc[2, "value"] = "abc"
    df.to_csv(d / SCORES, index=False)


def _empty(d: Path) -> None:
    (d / SCORES).write_bytes(b"")


def _truncate(name: str):
    def cut(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return cut


def _flip_byte(name: str):
    def flip(d: Path) -> None:
        data = bytearray((d / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (d / name).write_bytes(bytes(data))

    return flip


def _delete(name: str):
    return lambda d: (d / name).unlink()


DAMAGE = {
    "scores cut mid-row": (_cut_mid_row, "scores.csv does not match its record"),
    "scores cut at a row boundary": (_drop_rows, "scores.csv does not match its record"),
    "scores garbage value": (_garbage_value, "scores.csv does not match its record"),
    "scores empty": (_empty, "scores.csv does not match its record (0 bytes"),
    "scores deleted": (_delete(SCORES), "scores.csv is missing but its record lists it"),
    "curves truncated": (_truncate("curves.npz"), "curves.npz does not match its record"),
    "curves corrupt": (_flip_byte("curves.npz"), "curves.npz does not match its record (its SHA"),
    "maps truncated": (_truncate("maps.npz"), "maps.npz does not match its record"),
    "record truncated": (_truncate(RECORD), "record.json cannot be read"),
}

#: Records written before digests were kept: the checks that need no digest still hold.
LEGACY = {
    "scores cut mid-row": (_cut_mid_row, "scores.csv ends mid-row"),
    "scores cut at a row boundary": (_drop_rows, "rows but its record counted"),
    "scores garbage value": (_garbage_value, "line 4: value='abc' is not a number"),
    "scores empty": (_empty, "scores.csv cannot be read (it is empty)"),
}


def _damaged_copy(clean: Path, tmp_path: Path, damage, legacy: bool = False) -> Path:
    folder = tmp_path / "sweep" / "job"
    shutil.copytree(clean, folder)
    if legacy:
        record = json.loads((folder / RECORD).read_text())
        del record["files"]
        (folder / RECORD).write_text(json.dumps(record))
    damage(folder)
    return folder


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_file_is_refused_in_one_line_naming_its_folder(case, clean, tmp_path, capsys):
    damage, message = DAMAGE[case]
    folder = _damaged_copy(clean, tmp_path, damage)
    code, out, err = collate_cli(capsys, tmp_path / "sweep")
    assert code == 2 and out == "", err
    assert err.strip().count("\n") == 0 and str(folder) in err and message in err, err


@pytest.mark.parametrize("case", LEGACY, ids=list(LEGACY))
def test_a_damaged_file_of_a_record_without_digests_is_refused(case, clean, tmp_path, capsys):
    damage, message = LEGACY[case]
    folder = _damaged_copy(clean, tmp_path, damage, legacy=True)
    code, _, err = collate_cli(capsys, tmp_path / "sweep")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert str(folder) in err and message in err, err


def test_an_undamaged_copy_collates_to_the_clean_table(clean, tmp_path, capsys):
    _damaged_copy(clean, tmp_path, lambda d: None)
    code, out, err = collate_cli(capsys, tmp_path / "sweep")
    assert code == 0 and err == "" and out.startswith("| model")
    pd.testing.assert_frame_equal(table(tmp_path / "sweep"), table(clean))


# --- jobs that do not complete --------------------------------------------------------------------


def _launch(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    argv = [
        sys.executable,
        "-m",
        "bench",
        "method=rise",
        "method.n_masks=400",
        "dataset.limit=40",
        "batch_size=1",
        "metric=[deletion]",
        f"hydra.run.dir={out}",
        *extra,
    ]
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a background shell starts children with SIGINT ignored; a user's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_rows(proc: subprocess.Popen, partial: Path, rows: int = 2) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if partial.is_file() and partial.read_bytes().count(b"\n") > rows:
            return
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the job wrote no rows in 120 s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=str)
def test_a_killed_job_is_reported_with_the_rows_it_kept(sig, tmp_path, capsys):
    folder = tmp_path / "sweep" / "job"
    proc = _launch(folder)
    _wait_for_rows(proc, folder / f"{SCORES}.partial")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    record = json.loads((folder / RECORD).read_text())
    kept = (folder / f"{SCORES}.partial").read_bytes().count(b"\n") - 1
    assert kept >= 2 and not (folder / SCORES).exists()
    if sig == signal.SIGKILL:  # nothing ran after the signal: the record still says running
        assert record["status"] == "running" and record["pid"] == proc.pid
        status = "KILLED"
    else:  # caught: rows flushed, the record says interrupted, one line on stderr, exit 130
        assert proc.returncode == 130, stderr.decode()[-2000:]
        assert "interrupted" in stderr.decode().strip().splitlines()[-1]
        assert record["status"] == "interrupted" and record["rows"] == kept
        assert not (folder / LOCK).exists()
        status = "INTERRUPTED"
    code, _, err = collate_cli(capsys, tmp_path / "sweep")
    assert code == 1 and f"{status} {folder}" in err and f"{kept} row(s) kept" in err, err
    code, _, err = collate_cli(capsys, tmp_path / "sweep", "--allow-incomplete")
    assert code == 0 and f"{status} {folder}" in err


@pytest.mark.slow
def test_a_job_relaunched_into_a_killed_jobs_folder_takes_it_over(tmp_path):
    folder = tmp_path / "job"
    proc = _launch(folder)
    _wait_for_rows(proc, folder / f"{SCORES}.partial", rows=1)
    proc.kill()
    proc.wait()
    assert (folder / LOCK).is_file()  # left by the killed process, whose pid is gone
    record = job(folder)
    assert record["status"] == "completed" and not (folder / LOCK).exists()
    assert collate([folder]).incomplete == []


def test_a_folder_in_use_is_refused_in_one_line_and_a_completed_one_is_kept(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    import socket

    (busy / LOCK).write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process
    with pytest.raises(ConfigError, match=r"is in use by job pid \d+ on .*hydra.run.dir") as e:
        job(busy)
    assert "\n" not in str(e.value) and not (busy / RECORD).exists()
    done = tmp_path / "done"
    job(done)
    before = {n: (done / n).read_bytes() for n in (SCORES, RECORD)}
    again = job(done)  # the same job again: nothing recomputed, nothing overwritten
    assert again == json.loads(before[RECORD]) and again["status"] == "completed"
    assert {n: (done / n).read_bytes() for n in before} == before and not (done / LOCK).exists()


@pytest.mark.slow
def test_two_runs_launched_in_the_same_second_do_not_share_a_folder(tmp_path):
    folder = tmp_path / "same_second"
    first = _launch(folder)
    _wait_for_rows(first, folder / f"{SCORES}.partial", rows=1)
    second = _launch(folder)
    _, err = second.communicate(timeout=120)
    first.kill()
    first.wait()
    lines = err.decode().strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1 and "is in use by job pid" in lines[0]


# --- counted twice ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_cell_collated_twice_is_counted_once(tmp_path, capsys):
    for sweep in ("a", "b"):
        job(tmp_path / sweep / "0_random", "dataset.limit=4")
        job(tmp_path / sweep / "1_gradient", "method=gradient", "dataset.limit=4")
    once = table(tmp_path / "a")
    result = collate([tmp_path / "a", tmp_path / "b"])
    assert result.duplicates == len(collate([tmp_path / "a"]).rows)
    pd.testing.assert_frame_equal(summarise(result.rows), once)
    code, _, err = collate_cli(capsys, tmp_path / "a", tmp_path / "b", "--out", tmp_path / "o")
    assert code == 0 and "DUPLICATES:" in err and "counted once" in err
    # a killed job beside a clean one: left out and named, never pooled
    killed = tmp_path / "b" / "2_random_killed"
    shutil.copytree(tmp_path / "b" / "0_random", killed)
    (killed / SCORES).rename(killed / f"{SCORES}.partial")
    record = json.loads((killed / RECORD).read_text())
    record.update(status="running", pid=2**22 + 12345, host=os.uname().nodename)
    (killed / RECORD).write_text(json.dumps(record))
    result = collate([tmp_path / "a", tmp_path / "b"])
    pd.testing.assert_frame_equal(summarise(result.rows), once)
    assert [i.status for i in result.incomplete] == ["killed"]


@pytest.mark.slow
def test_shards_pool_and_different_configurations_get_their_own_labels(tmp_path):
    whole = tmp_path / "whole"
    job(whole / "j")
    shards = tmp_path / "shards"
    for s in (0, 1):
        job(shards / f"s{s}", "dataset.num_shards=2", f"dataset.shard={s}")
    pd.testing.assert_frame_equal(table(shards), table(whole))
    variants = tmp_path / "variants"
    job(variants / "seed0")
    job(variants / "seed1", "seed=1")
    job(variants / "step8", "metric.deletion.step=8")
    s = table(variants)
    # (in-process the method's label is "method": Hydra's choices exist only under the CLI)
    assert {m.partition("[")[2] for m in s["method"]} == {"seed=0]", "seed=1]"}
    assert "deletion[step=8]" in set(s["metric"]) and (s["n"] == 6).all()


# --- numbers --------------------------------------------------------------------------------------


def test_nonfinite_and_constant_maps_are_flagged_for_every_metric_and_left_out(
    tmp_path, monkeypatch
):
    from bench.methods.baselines import Random

    real = Random.attribute

    def broken(self, model, images, targets):
        maps = real(self, model, images, targets)
        maps[0] = float("nan")  # the first image of every batch: NaN (as NaN gradients give)
        maps[1] = 0.5  # the second: one value everywhere
        return maps

    clean = job(tmp_path / "clean")
    monkeypatch.setattr(Random, "attribute", broken)
    record = job(tmp_path / "broken")
    assert record["flagged_maps"] == {"nonfinite_map": 3, "constant_map": 3}
    rows = pd.read_csv(tmp_path / "broken" / SCORES, keep_default_na=False)
    assert len(rows) == clean["rows"]
    ids = sorted(rows["image_id"].unique())
    first = rows["image_id"].isin(ids[0::2])  # batches of 2: images 0, 2, 4 are first
    assert (rows.loc[first, "flag"] == "nonfinite_map").all()
    assert (rows.loc[~first, "flag"] == "constant_map").all()
    s = table(tmp_path / "broken").set_index("metric")
    assert (s["excluded"] == 6).all() and (s["n"] == 0).all() and s["mean"].isna().all()
    from bench.results.collate import format_table

    text = format_table(summarise(collate([tmp_path / "broken"]).rows))
    header, _, row = text.splitlines()[:3]
    assert header.startswith("| model | dataset | method | n | excluded |")
    assert row.split(" | ")[3:5] == ["0", "6"], row


def test_a_nan_score_is_flagged_and_never_averaged():
    from bench.results.collate import summarise as summ

    df = pd.DataFrame(
        {
            "model": "m",
            "dataset": "d",
            "method": "x",
            "metric": "deletion",
            "target": 0,
            "value": [0.2, np.nan, 0.4],
            "flag": ["", "nan", ""],
            "direction": "lower",
        }
    )
    s = summ(df).iloc[0]
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.3) and s["excluded"] == 0


# --- out of memory --------------------------------------------------------------------------------


class _OOMAbove(torch.nn.Module):
    """Wraps a model; raises the allocator's error for forward passes larger than ``limit``
    without gradients (the metrics' chunks), as a GPU that is too small would."""

    def __init__(self, model: torch.nn.Module, limit: int, error: type[BaseException]) -> None:
        super().__init__()
        self.model, self.limit, self.error = model, limit, error
        self.bench_meta = getattr(model, "bench_meta", None)

    def forward(self, x):
        if x.shape[0] > self.limit and not torch.is_grad_enabled():
            if self.error is RuntimeError:
                raise RuntimeError(
                    "[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"
                )
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, MemoryError, RuntimeError])
def test_a_chunk_out_of_memory_is_halved_and_retried(tiny_cnn, tiny_images, error):
    images = tiny_images.repeat(10, 1, 1, 1)  # 40 images
    expected = Context(model=tiny_cnn, chunk_size=64).forward(images)
    ctx = Context(model=_OOMAbove(tiny_cnn, 7, error), chunk_size=64)
    got = ctx.forward(images)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert ctx.chunk_size == 4 and [r["retried_with"] for r in ctx.retries] == [32, 16, 8, 4]


@pytest.mark.parametrize("method", ["smoothgrad", "rise", "scorecam", "gradient_shap"])
def test_a_methods_chunk_out_of_memory_is_halved_with_the_same_map(method, tiny_cnn, tiny_images):
    """The methods' own chunked loops (noise tunnels, RISE, Score-CAM) retry as the metrics' do."""
    from hydra.utils import instantiate

    from bench.core.context import OUT_OF_MEMORY

    overrides = {
        "smoothgrad": ["method.n_samples=12", "method.internal_batch_size=48"],
        "rise": ["method.n_masks=24", "method.internal_batch_size=96"],
        "scorecam": ["method.batch_size=32", "method.layer=features.3"],
        "gradient_shap": ["method.n_samples=12", "method.internal_batch_size=48"],
    }[method]
    cfg = compose(f"method={method}", *overrides).method
    expected = instantiate(cfg)(tiny_cnn, tiny_images, torch.tensor([0, 1, 2, 0]))

    small = copy.deepcopy(tiny_cnn)  # the same layers; any pass of more than 5 images fails
    real = small.forward

    def forward(x):
        if x.shape[0] > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(x)

    small.forward = forward
    before = len(OUT_OF_MEMORY)
    got = instantiate(cfg)(small, tiny_images, torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    halvings = OUT_OF_MEMORY[before:]
    assert halvings and halvings[-1]["retried_with"] <= 5


def test_roads_imputation_out_of_memory_halves_the_chunk_with_the_same_scores(
    tiny_cnn, tiny_images, monkeypatch
):
    """An allocation failure while a chunk's perturbed images are built (ROAD's imputation: on a
    GPU it can need more memory than the forward) halves the chunk like one in the forward."""
    import bench.metrics.road as road

    batch = Batch(
        images=tiny_images,
        targets=torch.tensor([0, 1, 2, 0]),
        ids=["a", "b", "c", "d"],
        orig_sizes=torch.tensor([[16, 16]] * 4),
    )
    maps = tiny_images.abs().sum(1)
    metric = road.RoadABC(mean=[0.5] * 3, std=[0.25] * 3, fractions=[0.2, 0.5, 0.8])
    expected = metric(Context(model=tiny_cnn, chunk_size=64), batch, maps)
    real = road.impute_linear

    def impute(images, removed, *args, **kwargs):
        if images.shape[0] > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3 GiB")
        return real(images, removed, *args, **kwargs)

    monkeypatch.setattr(road, "impute_linear", impute)
    ctx = Context(model=tiny_cnn, chunk_size=64)
    got = metric(ctx, batch, maps)
    for key, value in expected.curves.items():
        torch.testing.assert_close(got.curves[key], value, rtol=0, atol=1e-6)
    assert ctx.chunk_size == 3 and [r["retried_with"] for r in ctx.retries] == [12, 6, 3]
    assert ctx.forward_images == 4 * 2 * 3  # each mask forwarded once: nothing is counted twice


def test_an_error_that_is_not_out_of_memory_is_not_retried(tiny_cnn, tiny_images):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    ctx = Context(model=Broken(), chunk_size=8)
    with pytest.raises(RuntimeError, match="shapes"):
        ctx.forward(tiny_images)
    assert ctx.retries == []


def test_a_run_out_of_memory_gives_the_same_scores_and_says_so(tmp_path, monkeypatch):
    import bench.engine.build as builder

    clean = job(tmp_path / "clean", "chunk_size=64")
    real = builder.instantiate

    def small_gpu(node, *a, **k):
        obj = real(node, *a, **k)
        if isinstance(obj, torch.nn.Module) and hasattr(obj, "bench_meta"):
            return _OOMAbove(obj, 10, torch.cuda.OutOfMemoryError)
        return obj

    monkeypatch.setattr(builder, "instantiate", small_gpu)
    record = job(tmp_path / "oom", "chunk_size=64")
    assert record["status"] == "completed" and record["forward"]["out_of_memory"]
    assert record["forward"]["out_of_memory"][-1]["retried_with"] <= 10
    a = pd.read_csv(tmp_path / "clean" / SCORES)
    b = pd.read_csv(tmp_path / "oom" / SCORES)
    pd.testing.assert_frame_equal(a, b)
    assert clean["rows"] == record["rows"]


# --- disk full ------------------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["rows", "curves", "record"])
def test_a_full_disk_fails_the_job_cleanly(where, tmp_path, monkeypatch):
    import bench.engine.io as io
    import bench.engine.record as records
    import bench.engine.score as scoring

    folder = tmp_path / "job"
    if where == "rows":
        monkeypatch.setattr(io.RowWriter, "write", _enospc)
    elif where == "curves":
        monkeypatch.setattr(scoring, "atomic_savez", _enospc)
    if where == "record":  # the final record cannot be written: a small failed one replaces it
        real = records.atomic_write_json
        calls = []

        def second_fails(path, obj):
            calls.append(obj["status"])
            if len(calls) > 1:
                _enospc()
            real(path, obj)

        monkeypatch.setattr(records, "atomic_write_json", second_fails)
        with pytest.raises(OSError, match="No space left"):
            job(folder)
        record = json.loads((folder / RECORD).read_text())
        assert calls == ["running", "completed"]
        assert record["status"] == "failed"
        assert record["error"] == "the record could not be written (No space left on device)"
        assert [i.status for i in collate([folder]).incomplete] == ["failed"]
        assert not (folder / LOCK).exists()
        return
    with pytest.raises(OSError, match="No space left"):
        job(folder)
    record = json.loads((folder / RECORD).read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not (folder / SCORES).exists() and "files" not in record
    assert not (folder / LOCK).exists()
    assert [i.status for i in collate([folder]).incomplete] == ["failed"]


@pytest.mark.slow
def test_a_full_tmpfs_fails_the_job_and_keeps_a_consistent_record(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    ok = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if ok.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({ok.stderr.decode().strip()}); the monkeypatched cases cover it"
        )
    try:
        folder = mount / "job"
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                *JOB,
                "dataset.limit=16",
                "save_maps=true",
                "method=gradient",
                f"hydra.run.dir={folder}",
                "hydra.output_subdir=null",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert res.returncode != 0 and "No space left on device" in res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        record = json.loads((folder / RECORD).read_text())
        assert record["status"] == "failed" and "No space left on device" in record["error"]
        assert not (folder / SCORES).exists()
        for name in record.get("files") or {}:
            assert (folder / name).is_file()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --- the last faults of issue 22: each ends in one line --------------------------------------------


def _one_error_line(stderr: str) -> str:
    """The single ``error:`` line of ``stderr`` (progress bars and warnings aside)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith(("error:", "bench-collate:"))]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_completed_job_with_no_rows_is_reported_not_a_crash(tmp_path, capsys):
    folder = tmp_path / "empty"
    record = job(folder, "dataset.ids=[]")
    assert record["status"] == "completed" and record["rows"] == 0
    code, _, err = collate_cli(capsys, folder)
    assert code == 1 and "Traceback" not in err
    assert f"EMPTY {folder}: completed with 0 rows" in err
    assert "bench-collate: no rows: every completed job" in err
    job(tmp_path / "full", "dataset.limit=2")
    code, out, err = collate_cli(capsys, tmp_path)  # one empty job beside one with rows
    assert code == 0 and "random" in out and f"EMPTY {folder}" in err


@pytest.mark.slow
def test_a_sweep_with_empty_shards_collates_the_others_and_says_so(tmp_path):
    from tests.conftest import run_bench

    sweep = tmp_path / "sweep"
    res = run_bench(
        ["-m", "method=random", "dataset.limit=2", "dataset.num_shards=4", "dataset.shard=0,1,2,3",
         "metric=[sparseness]", f"hydra.sweep.dir={sweep}", f"paths.output_root={tmp_path}"]
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and (sweep / "summary.md").is_file()
    assert res.stderr.count("EMPTY ") == 2
    assert pd.read_csv(sweep / "summary.csv")["n"].tolist() == [2]


def test_a_sweep_whose_collation_fails_exits_nonzero_and_says_why(tmp_path, monkeypatch, capsys):
    import bench.cli.callbacks as callbacks

    def broken(*args, **kwargs):
        raise KeyError(0)

    monkeypatch.setattr(callbacks, "write_summary", broken)
    folder = tmp_path / "sweep"
    job(folder / "0", "dataset.limit=2")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(folder)}}})
    with pytest.raises(SystemExit) as exit_:
        callbacks.CollateOnMultirunEnd().on_multirun_end(config)
    assert exit_.value.code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: the sweep's collation in {folder} failed: KeyError: 0")


@pytest.mark.slow
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    from tests.conftest import run_bench

    res = run_bench(["hydra.run.dir=/proc/forbidden", "dataset.limit=1"])
    assert res.returncode == 1
    line = _one_error_line(res.stderr)
    assert line.startswith("error: cannot write /proc/forbidden") and "paths.output_root" in line


def _read_only_mount(tmp_path: Path) -> Path:
    """A read-only tmpfs (root ignores file modes, so a mode alone would not do)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    ok = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if ok.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({ok.stderr.decode().strip()})")
    return mount


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line_for_bench_and_bench_collate(tmp_path, capsys):
    from tests.conftest import run_bench

    mount = _read_only_mount(tmp_path)
    try:
        res = run_bench([f"hydra.run.dir={mount / 'job'}", "dataset.limit=1"])
        assert res.returncode == 1
        line = _one_error_line(res.stderr)
        assert line.startswith(f"error: cannot write {mount / 'job'} (Read-only file system)")
        # a finished job copied onto a read-only disk: bench-collate says where to write instead
        folder = tmp_path / "done"
        job(folder, "dataset.limit=2")
        subprocess.run(["umount", str(mount)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
        shutil.copytree(folder, mount / "done")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        code, _, err = collate_cli(capsys, mount / "done")
        assert code == 1
        assert _one_error_line(err).startswith(
            f"bench-collate: cannot write the summary into {mount / 'done'} (Read-only file system)"
        )
        code, out, _ = collate_cli(capsys, mount / "done", "--out", tmp_path / "summary")
        assert code == 0 and (tmp_path / "summary" / "summary.md").is_file()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_a_pt_image_that_is_not_plain_tensors_is_named_in_one_line(tmp_path, mode):
    from tests.conftest import run_bench

    root = tmp_path / "data"
    root.mkdir()
    marker = tmp_path / "ran"

    class Touch:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    (root / "payload.pt").write_bytes(pickle.dumps(Touch()))
    (root / "noise.pt").write_bytes(os.urandom(300))
    torch.save({"x": torch.zeros(3, 8, 8)}, root / "dict.pt")
    torch.save(torch.rand(3, 112, 112), root / "good.pt")
    (root / "labels.csv").write_text(
        "image,label\npayload.pt,0\nnoise.pt,1\ndict.pt,2\ngood.pt,3\n"
    )
    res = run_bench(
        ["dataset=folder", f"dataset.root={root}", "dataset.num_classes=8",
         f"dataset.on_bad_sample={mode}", "method=random", "metric=[sparseness]",
         f"hydra.run.dir={tmp_path / 'job'}", f"paths.output_root={tmp_path}"]
    )  # fmt: skip
    assert not marker.exists()
    if mode == "fail":
        assert res.returncode == 2
        line = _one_error_line(res.stderr)
        assert f"{root / 'payload.pt'}: cannot read the image array" in line
        assert "the weights-only loader refused it" in line and "on_bad_sample=skip" in line
    else:
        assert res.returncode == 0, res.stderr
        record = json.loads((tmp_path / "job" / RECORD).read_text())
        reasons = {Path(s["path"]).name: s["reason"] for s in record["dataset"]["skipped"]}
        assert set(reasons) == {"payload.pt", "noise.pt", "dict.pt"}
        assert "the weights-only loader refused it" in reasons["noise.pt"]
        assert "the weights-only loader refused it" in reasons["payload.pt"]
        assert "holding a dict, not a tensor" in reasons["dict.pt"]
        assert record["rows"] == 1


@pytest.mark.parametrize(
    "override,message",
    [
        ("metric.deletion.step=100000", r"metric.deletion.step=100000 is not valid for 112x112 "
         r"images: the curve would have 2 points .* accepted: 1..12543"),
        ("metric.insertion.blur_size=1001", r"metric.insertion.blur_size=1001 is not valid for "
         r"112x112 images: the kernel is larger than the image; accepted: an odd integer in 1..112"),
    ],
)  # fmt: skip
def test_a_setting_that_makes_the_protocol_meaningless_is_refused_with_its_bounds(
    tmp_path, override, message
):
    with pytest.raises(ConfigError, match=f"^{message}"):
        run(compose("metric=[deletion,insertion]", "dataset.limit=1", override, resolve=False),
            tmp_path / "job")  # fmt: skip
    assert not (tmp_path / "job" / SCORES).exists()
