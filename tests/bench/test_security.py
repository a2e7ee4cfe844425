"""Overrides cannot make the tool run arbitrary code: targets are this project's, a user's model is
an nn.Module of their own code, checkpoints unpickle only tensors unless trusted."""

from __future__ import annotations

import pytest
import torch

from bench.api import compose
from bench.cli import check_overrides
from bench.core.checkpoints import read_checkpoint
from bench.core.errors import ConfigError
from bench.models.custom import import_object, load_module
from bench.validate import validate


@pytest.mark.parametrize(
    "override,key",
    [
        ("method._target_=pathlib.Path.touch", "method._target_=pathlib.Path.touch"),
        ("+metric.x={_target_:os.system,command:ls}", "metric.x._target_=os.system"),
        ("+hydra.callbacks.x._target_=pathlib.Path.touch", "hydra.callbacks.x._target_"),
        (
            "+hydra.callbacks.x={_target_:subprocess.run}",
            "hydra.callbacks.x._target_=subprocess.run",
        ),
    ],
)
def test_targets_outside_the_project_are_refused_before_hydra_runs(override, key):
    with pytest.raises(ConfigError, match=f"^{key}.*is not valid; accepted: a target in"):
        check_overrides([override])


def test_a_composed_config_with_a_foreign_target_is_refused():
    cfg = compose("method._target_=builtins.print", resolve=False)
    with pytest.raises(ConfigError, match="method._target_=builtins.print is not valid"):
        validate(cfg)


@pytest.mark.parametrize("path", ["os.system", "subprocess.run", "builtins.eval", "pathlib.Path"])
def test_model_module_must_be_a_module_class_or_factory_of_ones_own_code(path):
    with pytest.raises(
        ConfigError, match=f"model.module={path} is a .*; accepted: an nn.Module subclass"
    ):
        import_object(path)


def test_model_module_refuses_before_calling_anything(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError):
        load_module("os.system", [8, 8], [0, 0, 0], [1, 1, 1], args={"command": f"touch {marker}"})
    assert not marker.exists()


def test_checkpoints_unpickle_only_tensors_and_plain_values_unless_trusted(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module
    with pytest.raises(
        ConfigError, match="set model.trust_checkpoint=true if you trust where it came from"
    ):
        read_checkpoint(path)
    assert isinstance(read_checkpoint(path, trust=True), torch.nn.Linear)
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict(), "epochs": 3}, path)
    assert read_checkpoint(path)["epochs"] == 3  # a state dict with its record needs no trust
