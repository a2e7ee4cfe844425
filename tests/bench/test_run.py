"""The runner end to end: one job, a sweep with collation, bad overrides, interrupted runs."""

from __future__ import annotations

import json
import math
import platform

import pandas as pd
import pytest
import torch

from bench.config.overrides import check_overrides
from bench.core.errors import ConfigError
from bench.engine.io import ROW_COLUMNS, RowWriter
from bench.results.collate import collate, collate_dirs, find_job_dirs, format_table, summarise
from tests.conftest import run_bench


def test_check_overrides_lists_accepted_values_with_close_matches():
    with pytest.raises(
        ConfigError, match="method=gradcm.*accepted:.*gradcam.*Did you mean gradcam"
    ):
        check_overrides(["method=gradcm"])
    with pytest.raises(ConfigError, match="method=nope"):
        check_overrides(["-m", "method=gradcam,nope"])
    check_overrides(["method=gradcam", "dataset.limit=3", "metric=[deletion,insertion]"])


def test_single_job_writes_rows_record_and_curves(tmp_path):
    out = tmp_path / "job"
    res = run_bench(["method=gradcam", "dataset.limit=6", "batch_size=4", f"hydra.run.dir={out}"])
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(out / "scores.csv", dtype={"image_id": str})
    assert list(df.columns) == ROW_COLUMNS
    assert len(df) == 6 * 3 and set(df["metric"]) == {"deletion", "insertion", "pointing_game"}
    assert df["image_id"].nunique() == 6 and (df["method"] == "gradcam").all()
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "completed" and record["rows"] == 18
    assert {"load_model", "attribute", "metric.deletion"} <= set(record["timings"])
    # the installed versions (pip metadata may or may not carry the local "+cu130" part)
    assert record["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert record["versions"]["python"] == platform.python_version()
    assert record["metrics"]["deletion"]["settings"]["step"] == 224
    # each score key's range, as its class declares it, recorded and carried by the rows
    assert record["metrics"]["deletion"]["ranges"] == {"": [0.0, 1.0]}
    assert record["metrics"]["pointing_game"]["ranges"] == {"": [0.0, 1.0], "difficult": [0.0, 1.0]}
    rows = collate([out]).rows
    assert (rows["range_low"] == 0.0).all() and (rows["range_high"] == 1.0).all()
    assert record["metrics"]["deletion"]["higher_is_better"] is False
    # 112x112 images, step 224: 56 steps, 57 points per curve, per metric
    assert record["forward"]["images"] == 6 * (1 + 57) + 6 * (1 + 57)
    import numpy as np

    curves = np.load(out / "curves.npz")
    assert curves["deletion"].shape == (6, 57) and list(curves["deletion.ids"]) == sorted(
        df["image_id"].unique()
    )
    # the summary table of the job's own rows is printed, each cell the mean of its rows
    table = format_table(summarise(collate([out]).rows))
    assert table in res.stdout
    lines = [ln.strip("|").split("|") for ln in table.splitlines() if ln.startswith("|")]
    header = [c.strip().split(" ")[0] for c in lines[0]]
    (row,) = [dict(zip(header, (c.strip() for c in ln))) for ln in lines[2:]]
    assert row["method"] == "gradcam" and row["n"] == "6"
    for metric in ("deletion", "insertion", "pointing_game"):
        mean = df.loc[df["metric"] == metric, "value"].mean()
        assert row[metric].split(" [")[0] == f"{mean:.3f}", metric


@pytest.mark.slow
def test_bad_overrides_end_with_one_line_errors(tmp_path):
    res = run_bench(["method=nosuch", f"hydra.run.dir={tmp_path}/a"])
    assert res.returncode == 2
    assert (
        res.stderr.strip().count("\n") == 0
        and "method=nosuch" in res.stderr
        and "gradcam" in res.stderr
    )
    res = run_bench(
        ["model.checkpoint=missing.pt", "dataset.limit=2", f"hydra.run.dir={tmp_path}/b"]
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "missing.pt" in res.stderr
    record = json.loads((tmp_path / "b" / "record.json").read_text())
    assert record["status"] == "failed" and "missing.pt" in record["error"]
    res = run_bench(["explain=maybe", "dataset.limit=2", f"hydra.run.dir={tmp_path}/c"])
    assert res.returncode == 2 and "explain=maybe" in res.stderr and "label" in res.stderr


@pytest.mark.slow
def test_sweep_collates_and_reports_failed_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_bench(
        [
            "-m",
            "method=random,gradcam",
            "dataset.limit=4",
            "batch_size=4",
            "metric=[pointing_game]",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(find_job_dirs([sweep])) == 2
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["method"]) == {"random", "gradcam"} and (summary["n"] == 4).all()
    assert (sweep / "summary.md").read_text().startswith("| model")
    assert (sweep / "summary.png").stat().st_size > 1000
    # a value no job can run with is refused before the first job starts: one line, exit 2
    early = tmp_path / "early"
    res = run_bench(
        [
            "-m",
            "method=random",
            "dataset.num_shards=2",
            "dataset.shard=0,5",
            f"hydra.sweep.dir={early}",
        ]
    )
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr[-2000:]
    assert "dataset.shard=5: dataset.shard=5 is not valid" in res.stderr and "0..1" in res.stderr
    assert not find_job_dirs([early])
    # one job failing at run time does not stop the others; the sweep exits 1 and names it
    bad = tmp_path / "bad"
    res = run_bench(
        [
            "-m",
            "method=random",
            "dataset.limit=2",
            "metric=[pointing_game]",
            "model.checkpoint=results/reference/models/shapes_cnn.pt,missing.pt",
            f"hydra.sweep.dir={bad}",
        ]
    )
    assert res.returncode == 1 and "FAILED" in res.stderr and "missing.pt" in res.stderr
    assert len(pd.read_csv(bad / "summary.csv")) == 1


def test_interrupted_run_keeps_its_rows(tmp_path):
    writer = RowWriter(tmp_path / "scores.csv")
    writer.write([{c: 1 for c in ROW_COLUMNS}])
    kept = writer.close(complete=False)
    assert kept.name == "scores.csv.partial" and not (tmp_path / "scores.csv").exists()
    assert len(pd.read_csv(kept)) == 1


def test_summary_mean_ci_and_class_mean():
    df = pd.DataFrame(
        {
            "model": "m",
            "dataset": "d",
            "method": "x",
            "metric": "pointing_game",
            "target": [0, 0, 0, 1],
            "value": [1.0, 1.0, 0.0, 0.0],
            "higher_is_better": True,
            "aggregate": "class_mean",
        }
    )
    s = summarise(df).iloc[0]
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.5)
    assert s["class_mean"] == pytest.approx((2 / 3 + 0) / 2)  # unweighted mean over classes
    assert s["classes_scored"] == 2
    # with a class count from the record, a class without pairs counts 0 (TorchRay)
    s3 = summarise(df.assign(num_classes=3)).iloc[0]
    assert s3["class_mean"] == pytest.approx((2 / 3 + 0 + 0) / 3) and s3["classes_scored"] == 2
    from bench.results.stats import bootstrap_ci

    ci = bootstrap_ci(df["value"])
    assert (s["ci_low"], s["ci_high"]) == (ci["ci_low"], ci["ci_high"])
    assert 0.0 <= s["ci_low"] < s["mean"] < s["ci_high"] <= 1.0
    nan = summarise(df.assign(value=[math.nan, 1.0, 1.0, 0.0])).iloc[0]
    assert nan["n"] == 3


def test_collate_skips_incomplete_jobs(tmp_path):
    assert collate_dirs([tmp_path]).empty


class _Counting(torch.Tensor):
    """A tensor that counts the operations done on it (to catch host round trips per row)."""

    calls: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_rows_move_each_tensor_to_the_host_once_per_batch_not_per_row():
    from bench.core.batch import Batch
    from bench.engine.score import rows_of
    from bench.metrics.base import MetricOutput

    b = 6
    targets = torch.arange(b).as_subclass(_Counting)
    batch = Batch(
        images=torch.zeros(b, 3, 4, 4),
        targets=targets,
        ids=[str(i) for i in range(b)],
        orig_sizes=torch.full((b, 2), 4),
    )
    out = MetricOutput(scores={"": torch.rand(b), "x": torch.rand(b)})
    _Counting.calls.clear()
    rows = rows_of(out, "m", batch, {"method": "t"})
    assert [r["target"] for r in rows] == list(range(b)) * 2
    per_row = [c for c in _Counting.calls if c in ("__getitem__", "__int__", "item", "__index__")]
    assert per_row == [] and _Counting.calls.count("tolist") == 1, _Counting.calls


def test_class_mean_counts_the_datasets_classes_not_a_mapped_heads(tmp_path):
    """VOC mapped onto a 1000-class head: the per-class mean is over VOC's 20 classes."""
    job = tmp_path / "job"
    job.mkdir()
    rows = pd.DataFrame(
        {
            "model": "m",
            "weights": "w",
            "dataset": "voc07",
            "split": "test",
            "image_id": ["1:dog", "2:cat"],
            "target": [112, 108],
            "method": "x",
            "metric": "pointing_game",
            "value": [1.0, 0.0],
            "flag": "",
        }
    )
    rows.to_csv(job / "scores.csv", index=False)
    record = {
        "status": "completed",
        "dataset": {"num_classes": 1000, "classes": 20},
        "metrics": {"pointing_game": {"higher_is_better": True, "aggregate": "class_mean"}},
    }
    (job / "record.json").write_text(json.dumps(record))
    s = summarise(collate_dirs([tmp_path])).iloc[0]
    assert s["class_mean"] == pytest.approx(1 / 20) and s["classes_scored"] == 2
