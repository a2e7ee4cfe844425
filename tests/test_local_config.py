"""The per-machine config: conf/local/default.yaml, when present, sets paths (and anything else)
once per machine; the paths default to environment variables."""

from __future__ import annotations

import os
import re
import shutil

from hydra import compose, initialize_config_dir

from bench import ROOT
from bench.config.schema import register


def _example() -> str:
    """docs/sweeps.md's conf/local/default.yaml example, verbatim."""
    readme = (ROOT / "docs" / "sweeps.md").read_text()
    block = re.search(
        r"```yaml\n(# @package _global_\n# conf/local/default.yaml.*?)```", readme, re.S
    )
    assert block, "docs/sweeps.md's conf/local example"
    return block.group(1)


def test_the_readmes_local_config_is_picked_up(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    register()
    monkeypatch.setenv("USER", "ada")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        plain = compose("config", overrides=["dataset=imagenet"])
    assert plain.paths.data_root == os.environ.get("BENCH_DATA_ROOT", "data")
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text(_example())
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=imagenet"])
    assert cfg.paths.data_root == "/datasets"
    assert cfg.paths.output_root == "/scratch/ada/attribution-bench"
    assert cfg.paths.cache_root == "/shared/attribution-cache"
    assert cfg.dataset.root == "/datasets/imagenet/val" and cfg.device == "cuda"


def test_paths_follow_the_environment(tmp_path, monkeypatch):
    register()
    monkeypatch.setenv("BENCH_DATA_ROOT", "/d")
    monkeypatch.setenv("BENCH_OUTPUT_ROOT", "/o")
    monkeypatch.delenv("BENCH_CACHE_ROOT", raising=False)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=voc07"])
    assert (cfg.paths.data_root, cfg.paths.output_root, cfg.paths.cache_root) == (
        "/d",
        "/o",
        "/o/cache",
    )
    assert cfg.dataset.root == "/d/VOCdevkit/VOC2007"
