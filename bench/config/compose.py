"""The job config ``bench <overrides>`` would run, composed by Hydra from ``conf/`` (and checked:
a config that would run code this project did not choose is refused, :mod:`bench.config.trust`)."""

from __future__ import annotations

from hydra import compose as _compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from bench.config.launchers import quiet_schema_matching
from bench.config.schema import register
from bench.config.trust import guarded
from bench.config.validate import fill_model_preprocessing
from bench.core.paths import CONF_DIR


def compose(*overrides: str, resolve: bool = True, hydra: bool = False) -> DictConfig:
    """The job config ``bench <overrides>`` would run (``conf/config.yaml`` plus the overrides);
    ``hydra=True`` keeps the ``hydra`` node (sweeper, launcher, run folders). A config that would
    run code this project did not choose is refused here too (:mod:`bench.config.trust`)."""
    register()
    quiet_schema_matching()
    with guarded(), initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = _compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
    if resolve:
        fill_model_preprocessing(cfg, strict=False)  # a model's own (timm, Hugging Face)
        OmegaConf.resolve(cfg)
    return cfg
