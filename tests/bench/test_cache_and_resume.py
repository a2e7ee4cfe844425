"""The attribution cache and resume: maps computed once and reused; a re-launched job neither
recomputes what it finished nor doubles or drops a row; a changed config is never mixed in."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import bench.engine.io
import bench.engine.score as scoring
from bench import ROOT
from bench.api import compose
from bench.engine.cache import MapCache, image_digests
from bench.engine.io import (
    LOCK,
    PROGRESS,
    RECORD,
    ROW_COLUMNS,
    SCORES,
    STALE_SECONDS,
    SUPERSEDED,
    RowWriter,
)
from bench.engine.run import run
from bench.results.collate import collate, summarise

JOB = ("method=gradient", "dataset.limit=6", "batch_size=2", "metric=[deletion,pointing_game]")


def job(out: Path, cache: Path | None, *overrides: str) -> dict:
    cached = ("cache=readwrite", f"paths.cache_root={cache}") if cache else ()
    return run(compose(*JOB, *cached, *overrides, resolve=False), out)


def scores(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / SCORES)


def curves(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "curves.npz") as f:
        return {k: f[k] for k in f.files}


def assert_same_results(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(scores(a), scores(b))
    ca, cb = curves(a), curves(b)
    assert ca.keys() == cb.keys()
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k])


# --- the cache ----------------------------------------------------------------------------------


def test_a_second_run_hits_every_map_and_scores_the_same(tmp_path):
    cache = tmp_path / "cache"
    first = job(tmp_path / "a", cache)
    assert first["cache"]["misses"] == 6 and first["cache"]["hits"] == 0
    assert first["cache"]["writes"] == 6 and first["cache"]["bytes_written"] > 0
    second = job(tmp_path / "b", cache)
    assert second["cache"]["hits"] == 6 and second["cache"]["misses"] == 0
    assert second["cache"]["writes"] == 0 and second["cache"]["bytes_read"] > 0
    assert_same_results(tmp_path / "a", tmp_path / "b")
    fresh = job(tmp_path / "c", None)  # no cache at all: the same numbers
    assert "cache" not in fresh
    assert_same_results(tmp_path / "a", tmp_path / "c")


def test_metrics_split_into_jobs_compute_the_maps_once(tmp_path):
    cache = tmp_path / "cache"
    a = job(tmp_path / "deletion", cache, "metric=[deletion]")
    b = job(tmp_path / "pointing", cache, "metric=[pointing_game]")
    assert (a["cache"]["misses"], b["cache"]["misses"], b["cache"]["hits"]) == (6, 0, 6)
    assert b["timings"]["attribute"] < a["timings"]["attribute"] + 1.0


@pytest.mark.parametrize(
    "change",
    [
        "method.abs=false",  # a method setting
        "method=input_x_gradient",  # another method
        "seed=1",  # the seed
        "model.checkpoint=results/reference/models/shapes_cnn_shuffled.pt",  # other weights
        "dataset.seed=7",  # other images under the same ids
        "cache_dtype=float16",  # another storage precision
    ],
)
@pytest.mark.slow
def test_changing_any_key_input_misses(tmp_path, change):
    cache = tmp_path / "cache"
    job(tmp_path / "a", cache)
    record = job(tmp_path / "b", cache, change)
    assert record["cache"]["misses"] == 6 and record["cache"]["hits"] == 0, change


@pytest.mark.slow
def test_batch_sizes_are_not_part_of_the_key(tmp_path):
    cache = tmp_path / "cache"
    job(tmp_path / "a", cache, "method=smoothgrad", "method.n_samples=4")
    record = job(
        tmp_path / "b",
        cache,
        "method=smoothgrad",
        "method.n_samples=4",
        "method.internal_batch_size=3",
        "batch_size=3",
    )
    assert record["cache"]["hits"] == 6


@pytest.mark.slow
def test_a_corrupt_cache_file_is_detected_and_recomputed(tmp_path):
    cache = tmp_path / "cache"
    job(tmp_path / "a", cache)
    files = sorted((cache / "maps").rglob("*.npz"))
    assert len(files) == 6
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: a bad zip or a checksum mismatch
    files[0].write_bytes(bytes(data))
    files[1].write_bytes(files[1].read_bytes()[:40])  # truncated
    record = job(tmp_path / "b", cache)
    assert record["cache"]["corrupt"] == 2 and record["cache"]["misses"] == 2
    assert record["cache"]["hits"] == 4 and record["cache"]["writes"] == 2
    assert_same_results(tmp_path / "a", tmp_path / "b")
    assert job(tmp_path / "c", cache)["cache"]["hits"] == 6  # rewritten


@pytest.mark.slow
def test_read_mode_never_writes_and_float16_scores_a_hit_like_a_miss(tmp_path):
    cache = tmp_path / "cache"
    record = job(tmp_path / "a", cache, "cache=read")
    assert record["cache"]["misses"] == 6 and record["cache"]["writes"] == 0
    assert not (cache / "maps").exists()
    job(tmp_path / "h1", cache, "cache_dtype=float16")
    job(tmp_path / "h2", cache, "cache_dtype=float16")
    assert_same_results(tmp_path / "h1", tmp_path / "h2")
    full = scores(tmp_path / "a")["value"].to_numpy()
    half = scores(tmp_path / "h1")["value"].to_numpy()
    np.testing.assert_allclose(half, full, atol=2e-2)


def test_a_key_covers_the_image_content_and_the_class(tmp_path):
    cache = MapCache(tmp_path, "readwrite")
    cache.start({"model": "m"})
    images = torch.rand(2, 3, 8, 8)
    base = cache.keys(["a", "b"], image_digests(images), torch.tensor([0, 1]))
    moved = images.clone()
    moved[0, 0, 0, 0] += 1e-6
    assert cache.keys(["a", "b"], image_digests(moved), torch.tensor([0, 1]))[0] != base[0]
    assert cache.keys(["a", "b"], image_digests(images), torch.tensor([1, 1]))[0] != base[0]
    assert cache.keys(["x", "b"], image_digests(images), torch.tensor([0, 1]))[0] != base[0]
    assert cache.keys(["a", "b"], image_digests(images), torch.tensor([0, 1])) == base
    other = MapCache(tmp_path, "readwrite")
    other.start({"model": "m2"})
    assert other.keys(["a", "b"], image_digests(images), torch.tensor([0, 1]))[0] != base[0]


OWN = (
    "model=custom",
    "trust_code=true",
    "model.mean=[0.5,0.5,0.5]",
    "model.std=[0.25,0.25,0.25]",
    "model.input_size=[112,112]",
)


def own_job(out: Path, cache: Path | None, module: str, *overrides: str) -> dict:
    return job(out, cache, *OWN, f"model.module=tests.bench._cache_models.{module}", *overrides)


@pytest.mark.parametrize(
    "second", [("Squared",), ("Plain", "model.args={scale: 3.0}")], ids=["forward", "argument"]
)
def test_own_models_with_the_same_weights_but_other_code_or_arguments_miss(tmp_path, second):
    """The key covers the model's code and every argument, not only its weights: a model with
    the same parameters and another forward (or a scale without parameters) computes its own
    maps, equal to a run without the cache."""
    cache = tmp_path / "cache"
    own_job(tmp_path / "a", cache, "Plain")
    record = own_job(tmp_path / "b", cache, *second)
    assert record["cache"]["misses"] == 6 and record["cache"]["hits"] == 0
    own_job(tmp_path / "fresh", None, *second)
    assert_same_results(tmp_path / "b", tmp_path / "fresh")
    assert not scores(tmp_path / "a")["value"].equals(scores(tmp_path / "b")["value"])


def test_an_edited_model_file_changes_the_key(tmp_path, monkeypatch):
    """The same module path and class name, the file edited between two runs: another key."""
    import importlib

    from bench.engine.cache import job_spec

    (tmp_path / "usernet.py").write_text("from torch import nn\nclass Net(nn.Conv2d):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import usernet

    cfg = compose(*OWN, "model.module=usernet.Net", resolve=False)

    def spec() -> dict:
        model = usernet.Net(3, 2, 1)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        return job_spec(cfg, model, {"name": "n", "weights": "random"}, torch.device("cpu"))

    before = spec()
    (tmp_path / "usernet.py").write_text(
        "from torch import nn\nclass Net(nn.Conv2d):\n    def forward(self, x):\n"
        "        return -super().forward(x)\n"
    )
    importlib.reload(usernet)
    after = spec()
    assert before["model"]["sha256"] == after["model"]["sha256"]
    assert before["model"]["code"] != after["model"]["code"]
    sys.modules.pop("usernet", None)


def _flip_in_member(path: Path, member: str) -> None:
    """Flip one byte inside the compressed data of ``member`` of the ``.npz`` at ``path``."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    data = bytearray(path.read_bytes())
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_swapped_file_and_a_damaged_checksum_member_are_corrupt_and_recomputed(tmp_path):
    """Another image's valid file under this image's key, and a byte of the ``sha256`` member
    damaged (zlib's error, not a checksum mismatch): both counted corrupt, deleted, recomputed;
    the scores equal a run without the cache."""
    cache = tmp_path / "cache"
    job(tmp_path / "a", cache)
    files = sorted((cache / "maps").rglob("*.npz"))
    assert len(files) == 6
    files[0].write_bytes(files[1].read_bytes())  # another image's valid map
    _flip_in_member(files[2], "sha256.npy")
    with pytest.raises(Exception):  # noqa: B017 - what the cache must survive
        with np.load(files[2]) as f:
            str(f["sha256"])
    record = job(tmp_path / "b", cache)
    assert record["cache"]["corrupt"] == 2 and record["cache"]["misses"] == 2
    assert record["cache"]["hits"] == 4 and record["cache"]["writes"] == 2
    job(tmp_path / "fresh", None)
    assert_same_results(tmp_path / "fresh", tmp_path / "b")
    assert job(tmp_path / "c", cache)["cache"]["hits"] == 6  # rewritten, now valid


# --- resume -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_that_failed_part_way_resumes_from_its_last_complete_batch(tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    job(clean, None, "save_maps=true")
    folder = tmp_path / "job"
    calls = {"n": 0}
    real = scoring.rows_of

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the third batch's first metric: batches 0 and 1 are complete
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "rows_of", failing)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="node lost"):
        job(folder, cache, "save_maps=true")
    failed = json.loads((folder / RECORD).read_text())
    assert failed["status"] == "failed" and failed["batches_complete"] == 2
    assert failed["rows"] == 8 and (folder / PROGRESS).is_file()
    monkeypatch.setattr(scoring, "rows_of", real)
    record = job(folder, cache, "save_maps=true")
    assert record["status"] == "completed" and record["rows"] == 12
    assert record["resumed"] == {
        "batches_kept": 2,
        "images_kept": 4,
        "rows_kept": 8,
        "first_started": failed["started"],
    }
    # only the images not finished were attributed again (the failed batch's maps were cached)
    assert record["cache"]["misses"] == 0 and record["cache"]["hits"] == 2
    assert_same_results(clean, folder)
    with np.load(folder / "maps.npz") as a, np.load(clean / "maps.npz") as b:
        np.testing.assert_array_equal(a["maps"], b["maps"])
        assert list(a["ids"]) == list(b["ids"])
    assert not (folder / PROGRESS).exists() and not (folder / "parts").exists()
    pd.testing.assert_frame_equal(
        summarise(collate([folder]).rows), summarise(collate([clean]).rows)
    )


def _row(i: int) -> dict:
    return {c: (i if c == "image_id" else "x") for c in ROW_COLUMNS}


def test_row_writer_resume_cuts_the_partial_file_back_and_counts_on(tmp_path):
    """``resume=(bytes, rows)`` cuts the partial file back to ``bytes`` before appending: the rows
    after the last complete batch are gone, not kept (appended after) nor half overwritten."""
    w = RowWriter(tmp_path / SCORES)
    w.write([_row(0), _row(1)])
    cut = w.tell()
    w.write([_row(2), _row(3)])  # a batch never recorded complete
    w.close(complete=False)
    w = RowWriter(tmp_path / SCORES, resume=(cut, 2))
    assert w.partial.stat().st_size == cut and w.tell() == cut and w.count == 2
    w.write([_row(9)])  # shorter than what was cut off
    assert w.count == 3
    final = w.close(complete=True)
    assert pd.read_csv(final)["image_id"].tolist() == [0, 1, 9]


def test_a_resumed_job_cuts_off_the_rows_of_the_batch_it_did_not_record(tmp_path, monkeypatch):
    """A job that dies after writing a batch's rows but before recording the batch complete: the
    re-launch cuts the partial rows back to the last recorded batch, then redoes that batch."""
    fast = ("method=gradient", "dataset.limit=6", "batch_size=2", "metric=[pointing_game]")

    def launch(folder: Path) -> dict:
        return run(compose(*fast, resolve=False), folder)

    clean = tmp_path / "clean"
    launch(clean)
    folder = tmp_path / "job"
    real_step, real_init = bench.engine.io.Progress.step, bench.engine.io.RowWriter.__init__
    steps = {"n": 0}

    def dying_step(self, writer, images, arrays):
        steps["n"] += 1
        if steps["n"] == 3:  # the third batch's rows are written, not yet recorded
            raise RuntimeError("node lost")
        return real_step(self, writer, images, arrays)

    monkeypatch.setattr(bench.engine.io.Progress, "step", dying_step)
    with pytest.raises(RuntimeError, match="node lost"):
        launch(folder)
    monkeypatch.setattr(bench.engine.io.Progress, "step", real_step)
    progress = json.loads((folder / PROGRESS).read_text())
    partial = folder / f"{SCORES}.partial"
    assert progress["batches"] == 2 and progress["rows"] == 4
    assert partial.stat().st_size > progress["bytes"] and len(pd.read_csv(partial)) == 6
    opened = []

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append((kwargs.get("resume"), self.partial.stat().st_size, self.count))

    monkeypatch.setattr(bench.engine.io.RowWriter, "__init__", spy)
    record = launch(folder)
    cut = progress["bytes"]
    assert opened == [((cut, 4), cut, 4)]  # cut back to the recorded batches before any write
    assert record["rows"] == 6 and record["resumed"]["rows_kept"] == 4
    pd.testing.assert_frame_equal(scores(clean), scores(folder))  # no row doubled or lost


@pytest.mark.slow
def test_a_changed_config_is_recomputed_never_mixed(tmp_path, monkeypatch):
    folder = tmp_path / "job"
    calls = {"n": 0}
    real = scoring.rows_of

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("stop")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "rows_of", failing)
    with pytest.raises(RuntimeError):
        job(folder, None)
    monkeypatch.setattr(scoring, "rows_of", real)
    record = job(folder, None, "method=random")  # another method into the same folder
    assert "resumed" not in record and record["rows"] == 12
    job(tmp_path / "random", None, "method=random")
    assert_same_results(tmp_path / "random", folder)  # random's rows only
    aside = list((folder / SUPERSEDED).iterdir())
    assert len(aside) == 1 and (aside[0] / f"{SCORES}.partial").is_file()
    # a completed job re-run with another config: recomputed, the old one set aside
    record = job(folder, None, "dataset.limit=4")
    assert record["rows"] == 8 and len(list((folder / SUPERSEDED).iterdir())) == 2
    assert len(collate([folder]).rows) == 8  # set-aside files are never collated


@pytest.mark.slow
def test_a_stale_lock_of_another_host_is_taken_over_a_fresh_one_is_not(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / LOCK).write_text("12345 some-other-node\n")
    with pytest.raises(Exception, match="in use by job pid 12345 on some-other-node"):
        job(folder, None)
    old = time.time() - STALE_SECONDS - 60
    os.utime(folder / LOCK, (old, old))
    assert job(folder, None)["status"] == "completed"


def _launch(folder: Path, cache: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "bench",
        "method=rise",
        "method.n_masks=200",
        "dataset.limit=12",
        "batch_size=2",
        "metric=[deletion]",
        "cache=readwrite",
        f"paths.cache_root={cache}",
        f"hydra.run.dir={folder}",
    ]
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_a_killed_job_relaunched_finishes_without_recomputing_and_equals_a_clean_run(tmp_path):
    clean = tmp_path / "clean"
    proc = _launch(clean, tmp_path / "cache_clean")
    assert proc.wait(timeout=300) == 0, proc.communicate()[1].decode()[-2000:]
    folder = tmp_path / "job"
    proc = _launch(folder, tmp_path / "cache")
    deadline = time.time() + 200
    while time.time() < deadline:  # SIGKILL once some batches are complete
        try:
            if json.loads((folder / PROGRESS).read_text())["batches"] >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((folder / RECORD).read_text())["status"] == "running"
    proc = _launch(folder, tmp_path / "cache")
    assert proc.wait(timeout=300) == 0, proc.communicate()[1].decode()[-2000:]
    record = json.loads((folder / RECORD).read_text())
    kept = record["resumed"]["images_kept"]
    assert record["resumed"]["batches_kept"] >= 3 and record["status"] == "completed"
    # the finished batches were not attributed again; at most the killed batch came from the cache
    assert record["cache"]["hits"] + record["cache"]["misses"] == 12 - kept
    assert record["cache"]["hits"] <= 2
    assert_same_results(clean, folder)
    assert (folder / LOCK).exists() is False and socket.gethostname() == record["host"]


@pytest.mark.slow
def test_a_change_of_the_code_that_computes_maps_misses(tmp_path, monkeypatch):
    import bench.engine.cache

    cache = tmp_path / "cache"
    job(tmp_path / "a", cache)
    monkeypatch.setattr(bench.engine.cache, "code_digest", lambda: "a method was edited")
    record = job(tmp_path / "b", cache)
    assert record["cache"]["misses"] == 6 and record["cache"]["hits"] == 0
