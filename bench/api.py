"""The Python API: the same configs the ``bench`` command composes, from a script or a notebook.

from bench.api import compose, evaluate
cfg = compose("method=gradcam", "metric=[deletion]")   # the resolved job config
df = evaluate(model, images, labels, methods=["gradcam"], metrics=["deletion"])  # long rows
"""

from __future__ import annotations

from hydra import compose as _compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from bench.core.paths import CONF_DIR
from bench.launchers import quiet_schema_matching
from bench.schema import register
from bench.trust import guarded


def evaluate(*args, **kwargs):
    """Score a model's maps or methods from Python: :func:`bench.evaluate.evaluate`."""
    from bench.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def compose(*overrides: str, resolve: bool = True, hydra: bool = False) -> DictConfig:
    """The job config ``bench <overrides>`` would run (``conf/config.yaml`` plus the overrides);
    ``hydra=True`` keeps the ``hydra`` node (sweeper, launcher, run folders). A config that would
    run code this project did not choose is refused here too (:mod:`bench.trust`)."""
    register()
    quiet_schema_matching()
    with guarded(), initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = _compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
    if resolve:
        OmegaConf.resolve(cfg)
    return cfg
