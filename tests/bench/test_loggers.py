"""logger=tensorboard: a completed job's files become TensorBoard events (scalars, curves, images,
hparams) that TensorBoard's own reader reads back; logger=none writes nothing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench import ROOT
from bench.api import compose
from bench.core.errors import ConfigError
from bench.engine.run import run
from bench.results.collate import CollateError
from bench.results.loggers import check_logger, hparams_of, log_job

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

JOB = (
    "method=random",
    "dataset.limit=3",
    "batch_size=3",
    "metric=[deletion,pointing_game,model_randomisation_cascading]",
    "metric.model_randomisation_cascading.similarities=[ssim]",
)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tb") / "job"
    record = run(compose(*JOB, "save_maps=true", resolve=False), folder)
    assert record["status"] == "completed"
    return folder


def events(logdir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_none_writes_nothing(job):
    assert log_job(job, "none") is None
    assert not (job / "tensorboard").exists()


def test_tensorboard_events_read_back(job, tmp_path):
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    logdir = log_job(copy, "tensorboard")
    assert logdir == copy / "tensorboard"
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # one run per job
    acc = events(logdir)
    tags = acc.Tags()
    scores = pd.read_csv(copy / "scores.csv")
    for metric, g in scores.groupby("metric"):
        (value,) = acc.Scalars(f"metric/{metric}")
        assert value.value == pytest.approx(g["value"].mean(), rel=1e-6)
    assert {"time/seconds_per_image", "time/attribution_per_image"} <= set(tags["scalars"])
    # the mean curves, one step per point
    with np.load(copy / "curves.npz") as z:
        mean = z["deletion"].mean(0)
    curve = acc.Scalars("curve/deletion")
    assert [s.step for s in curve] == list(range(len(mean)))
    np.testing.assert_allclose([s.value for s in curve], mean, rtol=1e-6)
    assert len(acc.Scalars("curve/model_randomisation_cascading.ssim")) == len(
        json.loads((copy / "record.json").read_text())["metrics"]["model_randomisation_cascading"][
            "curve_x"
        ]
    )
    # images: the curve figures and the three saved maps
    images = set(tags["images"])
    assert {"figures/curves", "figures/sanity"} <= images
    maps = sorted(t for t in images if t.startswith("maps/"))
    assert maps == [f"maps/shapes-0-test-0000{i}" for i in range(3)]
    first = acc.Images(maps[0])[0]
    assert (first.width, first.height) == (112, 112) and first.encoded_image_string
    # hparams: the config, with the metric means as the dashboard's metrics
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["method"].string_value == "random"
    assert hp["model"].string_value == "shapes_cnn"
    assert hp["metric.deletion.step"].number_value == 224
    assert hp["dataset.limit"].number_value == 3
    assert not any(k.startswith("paths.") for k in hp)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.experiment.metric_infos} == {
        f"metric/{m}" for m in scores["metric"].unique()
    }
    # logging again replaces the events instead of adding a second run
    log_job(copy, "tensorboard", maps=1)
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    assert len([t for t in events(logdir).Tags()["images"] if t.startswith("maps/")]) == 1


def test_the_config_group_options_are_log_job_options(job, tmp_path):
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    for name in ("none", "tensorboard"):
        node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "logger" / f"{name}.yaml"))
        kind = node.pop("kind")
        assert kind == name
        where = log_job(copy, kind, **node)
        assert (where is None) == (name == "none")
    assert (copy / "tensorboard").is_dir()


def test_hparams_are_tensorboard_types():
    record = {
        "method": {"name": "ig"},
        "config": {"method": {"n_steps": 8, "baseline": None}, "seed": 0, "paths": {"x": "/a"}},
        "model": {"name": "m"},
        "dataset": {"name": "d"},
    }
    hp = hparams_of(record)
    assert hp["method.n_steps"] == 8 and hp["method.baseline"] == "null" and "paths.x" not in hp
    assert all(isinstance(v, bool | int | float | str) for v in hp.values())


def test_bad_kind_options_and_jobs_are_one_line_errors(job, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="logger=wandb is not valid; accepted: none, tensorboard"):
        log_job(job, "wandb")
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    with pytest.raises(ConfigError, match="logger.dir"):
        log_job(copy, "tensorboard", dir="../elsewhere")
    with pytest.raises(ConfigError, match="logger.maps"):
        check_logger("tensorboard", maps=-1)
    with pytest.raises(ConfigError, match="logger.colour is not a key"):
        check_logger("tensorboard", colour="red")
    record = json.loads((copy / "record.json").read_text())
    record["status"] = "interrupted"
    (copy / "record.json").write_text(json.dumps(record))
    with pytest.raises(CollateError, match="interrupted, not completed"):
        log_job(copy, "tensorboard")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
    with pytest.raises(ConfigError, match=r"pip install 'attribution-bench\[tensorboard\]'"):
        check_logger("tensorboard")
    check_logger("none")


def test_cli_logs_a_sweep_after_the_fact(job, tmp_path, capsys):
    from bench.cli.loggers import main

    sweep = tmp_path / "sweep"
    shutil.copytree(job, sweep / "0_random")
    assert main(["tensorboard", str(sweep)]) == 0
    assert capsys.readouterr().out.strip() == str(sweep / "0_random" / "tensorboard")
