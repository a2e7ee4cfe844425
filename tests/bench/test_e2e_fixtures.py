"""End to end: each fixture dataset with a torchvision model (random weights) through the runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.api import compose
from bench.core.errors import ConfigError
from bench.engine.run import run
from tests.bench._fixtures import write_coco, write_folder, write_imagenet, write_voc

ROOT = Path(__file__).resolve().parents[2]
FAST = ["model=resnet18", "model.weights=null", "model.input_size=[64,64]", "batch_size=2"]
STEPS = ["metric.deletion.step=512", "metric.insertion.step=512"]


def compose_cfg(overrides: list[str]):
    return compose(*overrides, resolve=False)


def fixture(name: str, tmp: Path) -> list[str]:
    if name == "voc07":
        return [f"dataset.root={write_voc(tmp)}", "model.num_classes=20"]
    if name == "coco14":
        return [f"dataset.root={write_coco(tmp)}", "model.num_classes=3"]
    if name == "imagenet":
        val, boxes = write_imagenet(tmp)
        return [f"dataset.root={val}", f"dataset.boxes={boxes}", "model.num_classes=2"]
    return [f"dataset.root={write_folder(tmp)}", "model.num_classes=2"]


EXPECTED = {  # scored (image, class) pairs of each fixture
    "voc07": ["000001:dog", "000001:person", "000002:cat", "000003:car"],
    "coco14": ["139:person", "139:dog", "285:car"],
    "imagenet": ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002", "ILSVRC2012_val_00000003"],
    "folder": ["imgs/a", "imgs/b", "imgs/c"],
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(EXPECTED))
def test_rows_for_every_applicable_metric(tmp_path, dataset):
    cfg = compose_cfg(
        [
            f"dataset={dataset}",
            *FAST,
            *fixture(dataset, tmp_path / "data"),
            "metric=[deletion,insertion,pointing_game]",
            *STEPS,
        ]
    )
    record = run(cfg, tmp_path / "out")
    assert record["status"] == "completed"
    df = pd.read_csv(tmp_path / "out" / "scores.csv", keep_default_na=False)
    assert set(df["model"]) == {"resnet18"} and set(df["weights"]) == {"random"}
    for metric in ("deletion", "insertion", "pointing_game"):
        assert sorted(df.loc[df.metric == metric, "image_id"]) == sorted(EXPECTED[dataset]), metric
    pg = df[df.metric == "pointing_game"].set_index("image_id")
    no_box = {"imagenet": "ILSVRC2012_val_00000003", "folder": "imgs/b"}.get(dataset)
    for image_id, row in pg.iterrows():  # images without boxes are flagged, the others scored 0/1
        if image_id == no_box:
            assert row["flag"] == "no_region"
        else:
            assert float(row["value"]) in (0.0, 1.0)
    if dataset == "voc07":  # the difficult pair is repeated under pointing_game.difficult
        assert list(df.loc[df.metric == "pointing_game.difficult", "image_id"]) == ["000003:car"]


def test_shards_join_to_the_whole_run(tmp_path):
    data = fixture("voc07", tmp_path / "data")
    ids = []
    for shard in range(3):
        cfg = compose_cfg(
            [
                "dataset=voc07",
                *FAST,
                *data,
                "metric=[pointing_game]",
                "method=random",
                f"dataset.shard={shard}",
                "dataset.num_shards=3",
            ]
        )
        run(cfg, tmp_path / f"out{shard}")
        df = pd.read_csv(tmp_path / f"out{shard}" / "scores.csv")
        ids += list(df.loc[df.metric == "pointing_game", "image_id"])
    assert sorted(ids) == sorted(EXPECTED["voc07"])


@pytest.mark.parametrize("dataset", ["imagenet_plain", "folder_plain"])
def test_pointing_game_without_boxes_is_a_configuration_error(tmp_path, dataset):
    if dataset == "imagenet_plain":
        val, _ = write_imagenet(tmp_path / "data")
        extra = ["dataset=imagenet", f"dataset.root={val}", "model.num_classes=2"]
    else:
        root = write_folder(tmp_path / "data")
        (root / "plain.csv").write_text(
            "image,label\nimgs/a.jpg,7\n"
        )  # integer labels: the model's 1000
        extra = ["dataset=folder", f"dataset.root={root}", "dataset.labels=plain.csv"]
    cfg = compose_cfg([*extra, *FAST, "metric=[deletion,pointing_game]", STEPS[0]])
    with pytest.raises(ConfigError, match="metric=pointing_game needs boxes"):
        run(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "scores.csv").exists()  # refused before any compute


def test_class_count_mismatch_is_a_configuration_error(tmp_path):
    cfg = compose_cfg(
        ["dataset=voc07", *FAST, f"dataset.root={write_voc(tmp_path)}", "metric=[pointing_game]"]
    )
    with pytest.raises(
        ConfigError, match="model=resnet18 has 1000 classes but dataset=voc07 has 20"
    ):
        run(cfg, tmp_path / "out")


def test_digits_benchmark_configs(tmp_path):
    cfg = compose_cfg(
        [
            "model=digits_cnn",
            "dataset=digits",
            "dataset.limit=4",
            "batch_size=4",
            "metric=[pointing_game]",
            "method=gradcam",
        ]
    )
    record = run(cfg, tmp_path / "out")
    df = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert record["status"] == "completed" and len(df) == 4 and set(df["dataset"]) == {"digits"}
    assert df["image_id"].str.startswith("digits-0-test-").all()


@pytest.mark.slow
def test_cli_on_voc_fixture(tmp_path):
    root = write_voc(tmp_path / "data")
    bench = Path(sys.executable).with_name("bench")
    args = [
        str(bench),
        "model=resnet18",
        "model.weights=null",
        "model.input_size=[64,64]",
        "model.num_classes=20",
        "dataset=voc07",
        f"dataset.root={root}",
        "batch_size=2",
        "metric=[pointing_game]",
        "method=random",
        f"hydra.run.dir={tmp_path / 'out'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    df = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert sorted(df.loc[df.metric == "pointing_game", "image_id"]) == EXPECTED["voc07"]
    bad = subprocess.run(
        args[:-2] + ["model.num_classes=1000", f"hydra.run.dir={tmp_path / 'bad'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert bad.returncode == 2 and "has 1000 classes but dataset=voc07 has 20" in bad.stderr
