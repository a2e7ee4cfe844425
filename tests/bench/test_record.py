"""The job record: one typed definition (``bench.engine.record.Record``), one writer, one reader.
A record round-trips; one written by the release before ``schema`` still reads, unknown keys kept;
the throughput figure and table divide by one image count, a resumed job's included."""

from __future__ import annotations

import copy
import errno
import json
from pathlib import Path

import pytest

import bench.engine.score as scoring
from bench.api import compose
from bench.engine.io import RECORD
from bench.engine.record import (
    SCHEMA,
    CollateError,
    DatasetInfo,
    MethodInfo,
    MetricInfo,
    Record,
    Resumed,
    read_record,
    write_record,
)
from bench.engine.run import run
from bench.results import figures as F
from bench.results.collate import collate
from bench.results.collate import read_record as collate_read_record
from bench.results.papers import throughput

#: A completed job's record as the release before ``schema`` wrote it (a resumed job, on CPU).
OLD = {
    "status": "completed",
    "started": "2026-01-02T03:04:05+0000",
    "host": "node1",
    "pid": 4242,
    "config_hash": "0123456789abcdef",
    "config": {"seed": 0, "method": {"_target_": "bench.methods.Gradient"}},
    "choices": {"method": "gradient"},
    "versions": {"attribution-bench": "0.1.0", "git": "unknown"},
    "resumed": {"batches_kept": 2, "images_kept": 4, "rows_kept": 8, "first_started": None},
    "device": {"device": "cpu", "torch_threads": 2, "allocator": {}},
    "model": {"name": "shapes_cnn", "input_size": [112, 112]},
    "dataset": {
        "name": "shapes",
        "split": "test",
        "size": 64,
        "num_classes": 4,
        "classes": 4,
        "selected": 6,
        "limit": 6,
        "skipped": [],
        "class_mapping": None,
        "resize": None,
    },
    "method": {"name": "gradient", "class": "Gradient", "settings": {"abs": True}},
    "metrics": {
        "deletion": {
            "class": "Deletion",
            "higher_is_better": False,
            "category": "faithfulness",
            "citation": "Petsiuk et al. 2018",
            "requires": [],
            "aggregate": "",
            "directions": {"": "lower"},
            "ranges": {"": [0.0, 1.0]},
            "settings": {"step": 1792},
        },
        # a metric recorded before directions and ranges were kept
        "old_metric": {"class": "Old", "higher_is_better": True, "settings": {}},
    },
    "rows": 12,
    "flagged_maps": {},
    "forward": {"images": 60, "seconds": 0.5, "chunk_size": 8},
    "files": {"scores.csv": {"bytes": 10, "sha256": "ab"}},
    "cache": {"mode": "readwrite", "hits": 2, "misses": 0},
    "timings": {"load_model": 0.1, "attribute": 0.2, "metric.deletion": 0.3},
    "throughput": {"images": 2, "images_timed": 2, "phases": {}},
    "wall_seconds": 1.5,
}


def test_a_record_round_trips_through_the_writer_and_the_reader(tmp_path):
    record = Record(
        status="failed",
        started="2026-01-02T03:04:05+0000",
        host="node1",
        pid=7,
        config_hash="0123456789abcdef",
        config={"seed": 0},
        choices={},
        versions={"git": "unknown"},
        resumed=Resumed(batches_kept=1, images_kept=2, rows_kept=4, first_started=None),
        dataset=DatasetInfo(name="shapes", split="test", size=8, selected=6, subset={"limit": 6}),
        method=MethodInfo(name="gradient", cls="Gradient", settings={}),
        metrics={"deletion": MetricInfo.of("Deletion", {"directions": {"": "lower"}}, {})},
        error="RuntimeError: node lost",
        rows=4,
        partial_scores="scores.csv.partial",
        batches_complete=1,
        timings={},
        wall_seconds=2.0,
    )
    write_record(tmp_path, record)
    on_disk = json.loads((tmp_path / RECORD).read_text())
    assert on_disk["schema"] == SCHEMA == 1
    assert on_disk["dataset"]["limit"] == 6 and "subset" not in on_disk["dataset"]
    assert on_disk["method"]["class"] == "Gradient" and "cls" not in on_disk["method"]
    again = read_record(tmp_path)
    assert again == record
    assert again.to_dict() == record.to_dict() == on_disk
    assert read_record(tmp_path / RECORD) == record  # the file's path reads the same
    # what a job has not reached is not written
    assert set(Record(status="running").to_dict()) == {"schema", "status"}


def test_a_record_of_the_release_before_schema_still_reads_and_keeps_unknown_keys(tmp_path):
    old = copy.deepcopy(OLD)
    old["a_key_of_a_later_release"] = {"x": 1}
    old["metrics"]["deletion"]["new_info"] = "kept"
    old["dataset"]["new_dataset_key"] = 3
    (tmp_path / RECORD).write_text(json.dumps(old))
    record = read_record(tmp_path)
    assert record.schema == 0
    assert record.extra == {"a_key_of_a_later_release": {"x": 1}}
    assert record.metric_info("deletion").extra == {"new_info": "kept"}
    assert record.dataset.extra == {"new_dataset_key": 3}
    assert record.to_dict() == old  # nothing lost, nothing added (no schema on a schema-0 record)
    assert record.status == "completed" and record.rows == 12 and record.wall_seconds == 1.5
    assert record.resumed.images_kept == 4 and record.images_timed() == 2
    assert record.dataset.subset == {"limit": 6} and record.dataset.class_count() == 4
    assert record.method.cls == "Gradient" and record.device_name() == "cpu"
    assert record.metric_info("deletion").direction("") == "lower"
    assert record.metric_info("old_metric").direction("") == "higher"  # its bool
    assert record.metric_info("old_metric").to_dict() == OLD["metrics"]["old_metric"]
    assert record.metric_info("not_run").direction("x") == "higher"
    assert Record.of(old) == record and Record.of(record) is record
    assert record.versions == OLD["versions"]
    assert collate_read_record(tmp_path) == record  # collation's reader is the same one


def test_a_record_that_cannot_be_written_whole_leaves_a_small_failed_one(tmp_path, monkeypatch):
    import bench.engine.record as records

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    record = Record(status="interrupted", started="s", host="h", pid=1, config_hash="c", rows=3)
    record.error, record.config = "KeyboardInterrupt: ", {"a": 1}
    monkeypatch.setattr(records, "atomic_write_json", full)
    with pytest.raises(OSError, match="No space left"):
        write_record(tmp_path, record)
    assert json.loads((tmp_path / RECORD).read_text()) == {
        "schema": SCHEMA,
        "started": "s",
        "host": "h",
        "pid": 1,
        "config_hash": "c",
        "rows": 3,
        "status": "interrupted",
        "error": "the record could not be written (No space left on device) after: "
        "KeyboardInterrupt: ",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"status": "comp', r"record.json cannot be read \(JSONDecodeError: "),
        ("[1, 2]", r"record.json is not a job record \(a JSON object\)\.$"),
    ],
)
def test_an_unreadable_record_is_a_one_line_collate_error(tmp_path, text, message):
    (tmp_path / RECORD).write_text(text)
    with pytest.raises(CollateError, match=message) as err:
        read_record(tmp_path)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{tmp_path}: ")


# --- one image count for throughput ---------------------------------------------------------------

JOB = ("method=gradient", "dataset.limit=6", "batch_size=2", "metric=[deletion,pointing_game]")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Path:
    """A job that failed in its third batch and was re-launched: two batches (4 images) kept."""
    root = tmp_path_factory.mktemp("resumed")
    folder = root / "sweep" / "job"
    real = scoring.rows_of
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the third batch's first metric: batches 0 and 1 are complete
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    scoring.rows_of = failing
    try:
        with pytest.raises(RuntimeError, match="node lost"):
            run(compose(*JOB, resolve=False), folder)
    finally:
        scoring.rows_of = real
    record = run(compose(*JOB, resolve=False), folder)
    assert record["status"] == "completed" and record["resumed"]["images_kept"] == 4
    return root / "sweep"


def test_a_resumed_job_shows_the_same_time_per_image_in_the_figure_and_the_table(resumed):
    record = read_record(resumed / "job")
    assert record.images_timed() == 2  # 6 selected, 4 scored before the re-launch
    jobs, collation = F.load_jobs([resumed])
    figure = F.throughput(jobs)
    assert set(figure["images"]) == {2}
    table = throughput({str(resumed / "job"): record}, collation.rows)
    assert table["images"].tolist() == [2]
    per_image = record.wall_seconds / 2
    assert figure["per_image"].sum() == pytest.approx(per_image, rel=1e-6)
    assert table["wall_s_per_image"].iloc[0] == pytest.approx(per_image, rel=1e-6)
    attribution = figure.set_index("phase").loc["attribution", "per_image"]
    assert table["attribute_s_per_image"].iloc[0] == pytest.approx(attribution, rel=1e-9)
    # the same from the records alone (no rows) and through collation's reader
    bare = throughput([collate_read_record(resumed / "job")])
    assert bare["wall_s_per_image"].iloc[0] == pytest.approx(per_image, rel=1e-6)
    # the stacked bars of the figure end at the table's wall time per image
    fig = F.throughput_figure(jobs)
    ends = [bar.get_x() + bar.get_width() for c in fig.axes[0].containers for bar in c.patches]
    assert max(ends) == pytest.approx(table["wall_s_per_image"].iloc[0], rel=1e-6)
    assert len(collate([resumed]).rows) == 12  # every row once, the kept ones included
