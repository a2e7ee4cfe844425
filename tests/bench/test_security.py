"""A config cannot make the tool run code it did not choose (bench/trust.py), whatever the route:
the command line, nested nodes, ``model.args``, nodes under ``hydra`` (callbacks, logging,
environment, search path), YAML reached through ``--config-dir`` or ``hydra.searchpath``.
Checkpoints unpickle only tensors unless trusted; a user's own module needs ``trust_code=true``."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from bench import ROOT
from bench.api import compose
from bench.config.overrides import check_overrides
from bench.config.trust import allowed_targets, check_config, check_target
from bench.config.validate import validate
from bench.core.checkpoints import read_checkpoint
from bench.core.errors import ConfigError
from bench.core.origin import check_model_object, code_identity
from bench.models.custom import import_object, load_module

REFUSED = r"is not valid: (it names .*, which a config may not run|a config may not run code)"


def _cli_faults():
    spec = importlib.util.spec_from_file_location("cli_faults", ROOT / "scripts" / "cli_faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_faults"] = module  # pickling its Touch class needs the module
    spec.loader.exec_module(module)
    return module


class Touch:
    """Unpickling this creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    "override,key,shown",
    [
        ("method._target_=pathlib.Path.touch", "method._target_", "pathlib.Path.touch"),
        ("+metric.x={_target_:os.system,command:ls}", "metric.x._target_", "os.system"),
        ("+hydra.callbacks.x._target_=pathlib.Path.touch", "hydra.callbacks.x._target_", None),
        ("+hydra.callbacks.x={_target_:subprocess.run}", "hydra.callbacks.x._target_", None),
        # the prefix is ours, the object is not: Hydra's locate follows module attributes
        (
            "method._target_=bench.results.collate.pd.read_pickle",
            "method._target_",
            "pandas.read_pickle",
        ),
        (
            "method._target_=bench.engine.run.torch.load",
            "method._target_",
            "torch.serialization.load",
        ),
        ("+hydra.callbacks.x._target_=hydra.utils.Path.touch", "hydra.callbacks.x._target_", None),
        # one value of a sweep is enough
        ("method._target_=bench.methods.gradient.Gradient,os.system", "method._target_", None),
    ],
)
def test_targets_a_config_may_not_name_are_refused_before_hydra_runs(override, key, shown):
    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    text = str(err.value)
    assert text.startswith(key) and "\n" not in text, text
    assert "is not valid" in text
    if shown:
        assert f"it names {shown}" in text or "outside this project" in text, text


def test_every_target_of_the_shipped_configs_is_allowed_and_nothing_else_is():
    """The allow-list covers what conf/ names (every option of every group), and it holds only
    this project's classes and loaders."""
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.strip().startswith("_target_:"):
                target = line.split(":", 1)[1].split("#")[0].strip()
                if target.startswith("hydra_plugins.hydra_ray_launcher") and not (
                    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher")
                ):
                    continue
                check_target(f"{path.name}:_target_", target)  # raises if refused
    for obj in allowed_targets():
        assert obj.__module__.split(".")[0] in ("bench", "methods", "metrics"), obj


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["method._target_=builtins.print"], r"^method._target_=builtins.print is not valid"),
        (
            ["model=custom", "trust_code=true", "model.module=tests.conftest.TinyCNN",
             "model.mean=[0,0,0]", "model.std=[1,1,1]",
             "model.args={x: {_target_: pathlib.Path.touch, _args_: [/tmp/x]}}"],
            r"^model.args.x._target_=pathlib.Path.touch is not valid",
        ),
        (["+hydra.job.env_set.LD_PRELOAD=/x.so"], r"^hydra.job.env_set.LD_PRELOAD is not valid"),
        (["+hydra.job.env_set.PYTHONPATH=/x"], r"^hydra.job.env_set.PYTHONPATH is not valid"),
        (["hydra.searchpath=[pkg://evilmod]"], r"^hydra.searchpath=pkg://evilmod is not valid"),
        (["hydra/launcher=submitit_slurm", "hydra.launcher.setup=[echo hi]"],
         r"^hydra.launcher.setup=.* holds shell lines"),
        (["hydra/launcher=submitit_slurm", "hydra.launcher.srun_args=['--prolog=/x']"],
         r"^hydra.launcher.srun_args=--prolog=/x makes srun run a program"),
        (["hydra/launcher=submitit_slurm", "+hydra.launcher.additional_parameters.wrap=x"],
         r"^hydra.launcher.additional_parameters.wrap makes Slurm run a program"),
        (["hydra/launcher=ray", "+hydra.launcher.ray.init.runtime_env={setup_hook: os.system}"],
         r"^hydra.launcher.ray.init.runtime_env is not valid without trust_code=true"),
        (["model=custom", "model.module=tests.conftest.TinyCNN"],
         r"^model.module=tests.conftest.TinyCNN imports and runs code .* trust_code=true"),
    ],
)  # fmt: skip
def test_each_route_is_refused_where_the_config_is_composed(overrides, match):
    """The composed config is checked as a whole (hydra node included): the same check runs in
    ``bench`` before Hydra configures logging or creates a callback or a launcher."""
    with pytest.raises(ConfigError, match=match):
        check_overrides(overrides)
        compose(*overrides, resolve=False, hydra=True)


def test_the_opt_in_lets_a_launcher_run_shell_lines_and_set_any_variable():
    cfg = compose(
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.setup=[module load cuda]",
        "+hydra.job.env_set.LD_LIBRARY_PATH=/opt/cuda",
        "trust_code=true",
        resolve=False,
        hydra=True,
    )
    assert list(cfg.hydra.launcher.setup) == ["module load cuda"]
    check_config(cfg)
    safe = compose("+hydra.job.env_set.OMP_NUM_THREADS=4", resolve=False, hydra=True)
    check_config(safe)  # the thread and device variables need no opt-in


@pytest.mark.parametrize(
    "node,match",
    [
        ({"handlers": {"x": {"()": "builtins.open", "file": "f"}}}, r"\(\)=builtins.open"),
        ({"handlers": {"x": {"class": "subprocess.Popen"}}}, r"class=subprocess.Popen"),
        ({"handlers": {"x": {"class": "logging.os.system"}}}, r"class=logging.os.system"),
        ({"handlers": {"x": {"class": "logging.StreamHandler", "stream": "ext://os.system"}}},
         r"stream=ext://os.system .* logging would import it"),
    ],
)  # fmt: skip
def test_logging_factories_are_logging_classes(node, match):
    with pytest.raises(ConfigError, match=f"^hydra.job_logging.handlers.x.{match}"):
        check_config({"hydra": {"job_logging": node}})
    check_config(  # Hydra's own default
        {"hydra": {"job_logging": {"handlers": {"console": {
            "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}}}}}
    )  # fmt: skip


def test_interpolated_targets_and_node_building_resolvers_are_refused():
    with pytest.raises(ConfigError, match=r"^method._target_=\$\{oc.env:T\} is an interpolation"):
        check_config({"method": {"_target_": "${oc.env:T}"}})
    with pytest.raises(ConfigError, match=r"^metric.x=.* oc.decode and oc.create"):
        check_config({"metric": {"x": "${oc.create:{_target_: os.system}}"}})


@pytest.mark.parametrize(
    "path,match",
    [
        ("os.system", "is from the standard library"),
        ("subprocess.run", "is from the standard library"),
        ("pathlib.Path", "is from the standard library"),
        ("torch.load", r"is a function from torch; accepted: an nn.Module subclass"),
        ("numpy.load", r"is a function from numpy"),
        ("pandas.read_pickle", r"is a function from pandas"),
        ("joblib.load", r"is a function from joblib"),
        ("torch.hub.load", r"is a function from torch"),
        ("bench.core.checkpoints.read_checkpoint", r"is a function from bench"),
    ],
)
def test_model_module_is_a_module_class_or_a_factory_of_ones_own_code(path, match):
    with pytest.raises(ConfigError, match=f"^model.module={path} {match}"):
        import_object(path)


def test_model_module_accepts_a_module_class_from_anywhere_and_ones_own_function():
    import torchvision

    assert import_object("torchvision.models.ResNet") is torchvision.models.ResNet
    assert import_object("tests.bench.test_security.own_factory") is own_factory


def own_factory() -> torch.nn.Module:
    return torch.nn.Conv2d(3, 2, 1)


def test_model_module_refuses_before_calling_anything(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError):
        load_module("os.system", [8, 8], [0, 0, 0], [1, 1, 1], args={"command": f"touch {marker}"})
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(ConfigError, match="is a function from torch"):
        load_module("torch.load", [8, 8], [0, 0, 0], [1, 1, 1], args={"f": str(evil)})
    assert not marker.exists()


def test_a_composed_config_is_checked_in_validate_too():
    """The Python API and a record's config reach :func:`validate` without Hydra's loader."""
    cfg = compose(resolve=False)
    cfg.method._target_ = "bench.results.collate.pd.read_pickle"
    with pytest.raises(
        ConfigError, match=f"^method._target_=bench.results.collate.pd.read_pickle {REFUSED}"
    ):
        validate(cfg)
    cfg = compose(resolve=False)
    with open_dict(cfg):
        cfg.model = {"_target_": "bench.models.custom.load_module", "module": "x.Y"}
    with pytest.raises(ConfigError, match=r"^model.module=x.Y imports and runs code"):
        validate(cfg)


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


def test_library_code_is_identified_by_version_and_own_code_by_its_source():
    assert code_identity(torch.nn.Conv2d).startswith("torch==")
    own = code_identity(Touch)
    assert own.startswith("tests.bench.test_security:") and len(own.split(":")[1]) == 64
    check_model_object("m", torch.nn.Conv2d)


@pytest.mark.slow
def test_every_payload_through_the_cli_is_refused_in_one_line_and_runs_nothing():
    """scripts/cli_faults.py's payloads, each through ``python -m bench`` in a fresh folder; the
    own-module control runs with the opt-in."""
    faults = _cli_faults()
    failures = []
    for case in faults.payloads():
        result = faults.run_case(case, ROOT, timeout=300)
        # a refusal is one line; it names the key of the YAML file when the payload came from one
        ok = (
            result["outcome"] == "accepted"
            if case.expect == "runs"
            else result["outcome"] in ("one line", "one line, names no key")
        )
        if not ok or result["marker"]:
            failures.append(result)
    assert not failures, failures


def test_torchvision_weights_from_the_hub_cache_are_read_as_tensors_only(tmp_path, monkeypatch):
    """torch.hub reads cached weights with weights_only=False: a file dropped into a shared
    TORCH_HOME under the name torchvision expects must not run code."""
    from bench.models import load_torchvision, torchvision_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = torchvision_weights_file("resnet18", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = tmp_path / "ran"
    path.write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(ConfigError, match=r"^model.weights=.* could not load"):
        load_torchvision("resnet18", weights="IMAGENET1K_V1", download=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "old,new",
    [
        ("methods.gradient.Gradient", "bench.methods.gradient.Gradient"),
        ("methods.perturbation.Lime", "bench.methods.superpixel.Lime"),
        ("bench.methods.perturbation.KernelShap", "bench.methods.superpixel.KernelShap"),
    ],
)
def test_a_target_of_a_moved_class_gets_its_new_name(old, new):
    """A config written for an earlier release (``methods.*``, a class that changed module) is
    refused in one line that names where the class is now."""
    with pytest.raises(ConfigError, match=f"(?i)did you mean method._target_={new}"):
        check_target("method._target_", old)
