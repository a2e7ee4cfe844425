"""What a configuration may make this tool run: every route checked by the object it names.

A config (the command line, an experiment YAML, ``--config-dir``, ``hydra.searchpath``, nodes
under ``hydra``, nested nodes) can only pick code this project chose:

- every ``_target_``, wherever it sits, names one of :func:`allowed_targets`: this project's
  method, metric and dataset classes, its model loaders and Hydra callbacks, and the Hydra
  launchers, sweeper and callbacks it documents. The name is resolved (``bench.results.collate.pd`` is
  pandas) and the object compared, never the text; a name outside this project's and Hydra's
  packages is refused before anything is imported;
- logging factories under ``hydra.job_logging`` / ``hydra.hydra_logging`` (``()``, ``class``,
  ``ext://``) name :mod:`logging`'s handlers, formatters and filters;
- ``hydra.searchpath`` reads config files only: a ``pkg://`` entry (which imports a package) must
  be Hydra's or this project's;
- resolvers that build config nodes from text (``oc.decode``, ``oc.create``) are refused, and a
  ``_target_`` must be written out, not interpolated.

What needs the one opt-in, ``trust_code=true`` (a top-level key a reviewer sees in the config):
a user's own model module (``model=custom model.module=...``, imported and called), shell lines of
a launcher (``hydra.launcher.setup``, srun prologs) and environment variables beyond the thread
and device ones (``hydra.job.env_set``). Even then a model module is an ``nn.Module`` class or a
factory function of the user's own code, never a loader from the standard library or from a
package this tool depends on (``torch.load``, ``pandas.read_pickle``): unpickling stays behind
``model.trust_checkpoint``. The threat model is in docs/security.md.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.core.errors import ConfigError

#: Top-level packages whose names a ``_target_`` may start with (nothing else is imported).
ROOTS = ("bench", "hydra", "hydra_plugins")
#: Hydra's and its plugins' classes a ``hydra.*`` node may name (those that are installed).
HYDRA_TARGETS = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra.experimental.callbacks.LogJobReturnCallback",
    "hydra.experimental.callbacks.PickleJobInfoCallback",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
)
#: This project's Hydra callbacks.
CALLBACKS = (
    "bench.cli.callbacks.ValidateOnMultirunStart",
    "bench.cli.callbacks.CollateOnMultirunEnd",
    "bench.cli.callbacks.PinSweepDir",
)
#: Modules whose classes a logging factory (``()`` or ``class``) may name.
LOGGING_MODULES = ("logging", "logging.handlers", "colorlog")
#: ``ext://`` objects a logging config may name.
LOGGING_EXT = ("ext://sys.stdout", "ext://sys.stderr")
#: ``pkg://`` search paths Hydra may import (its own and its plugins' configs, ours).
SEARCH_PACKAGES = ("hydra", "hydra_plugins", "bench")
#: Environment variables ``hydra.job.env_set`` may set without ``trust_code``.
SAFE_ENV = frozenset(
    {
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "CUDA_LAUNCH_BLOCKING",
        "CUBLAS_WORKSPACE_CONFIG",
        "PYTORCH_CUDA_ALLOC_CONF",
        "TOKENIZERS_PARALLELISM",
        "MPLBACKEND",
        "BENCH_CACHE",
        "BENCH_OUTPUT_ROOT",
    }
)
#: Launcher keys that hold shell lines or run programs (need ``trust_code``).
SHELL_KEYS = ("setup",)
SRUN_PROGRAMS = ("--prolog", "--epilog", "--task-prolog", "--task-epilog")
SBATCH_PROGRAMS = ("wrap", "prolog", "epilog", "task_prolog", "task_epilog", "task-prolog")
#: Ray's ``init`` / ``remote`` keys that are resources, not code (``runtime_env`` can run hooks).
RAY_KEYS = {
    "init": {
        "address",
        "num_cpus",
        "num_gpus",
        "object_store_memory",
        "include_dashboard",
        "namespace",
        "log_to_driver",
        "ignore_reinit_error",
        "resources",
        "_temp_dir",
    },
    "remote": {"num_cpus", "num_gpus", "max_retries", "memory", "resources", "max_calls"},
}
#: Resolvers that turn text into config nodes (a ``_target_`` could hide in the text).
NODE_RESOLVERS = re.compile(r"\$\{\s*oc\.(decode|create)\s*:")
OPT_IN = "trust_code=true"


def _members(package: str, base: type) -> Iterator[object]:
    """Every subclass of ``base`` defined in the modules of ``package``."""
    pkg = importlib.import_module(package)
    names = [package] + [
        f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg
    ]
    for name in names:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, base) and obj.__module__ == name:
                yield obj


@cache
def allowed_targets() -> dict[object, str]:
    """This project's objects a ``_target_`` may name, with what each is (Hydra's are compared by
    name, :data:`HYDRA_TARGETS`, so that no launcher plugin is imported to check a config)."""
    from bench.data.base import ImageDataset
    from bench.methods.base import Method
    from bench.metrics.base import Metric
    from bench.models import LOADERS

    out: dict[object, str] = {}
    for obj in _members("bench.methods", Method):
        out[obj] = "method"
    for obj in _members("bench.metrics", Metric):
        out[obj] = "metric"
    for obj in _members("bench.data", ImageDataset):
        out[obj] = "dataset"
    for obj in LOADERS:
        out[obj] = "model loader"
    return out


def _resolve(name: str) -> object:
    """The object at the dotted ``name`` (module attributes followed, as Hydra's locate does)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as err:
            if err.name is not None and ".".join(parts[:i]).startswith(err.name) and i > 1:
                continue
            raise
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def _where(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__name__)}"


HINTS = {
    "method": "a method class of methods/ (the options of conf/method/)",
    "metric": "a metric class of metrics/ (the options of conf/metric/)",
    "model": "a model loader of bench.models (the options of conf/model/; your own module goes "
    f"through model=custom model.module=... with {OPT_IN})",
    "dataset": "a dataset class of bench.data (the options of conf/dataset/)",
    "hydra": "Hydra's launchers and sweeper (hydra/launcher=...) and the callbacks "
    + ", ".join(CALLBACKS + HYDRA_TARGETS[2:4]),
}


def _hint(key: str) -> str:
    if key.startswith("model.args"):
        return (
            "plain values: model.args are your constructor's keyword arguments, and Hydra would "
            "call a _target_ among them"
        )
    head = key.split(".", 1)[0].split("[", 1)[0]
    return HINTS.get(head, "a class or function this project lists (docs/security.md)")


def check_target(key: str, target: object) -> object:
    """The object ``target`` names, if a config may name it; else a one-line ConfigError."""
    if not isinstance(target, str):
        raise ConfigError(f"{key}={target!r} is not valid; accepted: a dotted name, {_hint(key)}.")
    if "${" in target:
        raise ConfigError(
            f"{key}={target} is an interpolation; accepted: the target written out, {_hint(key)}."
        )
    root = target.replace(":", ".").split(".", 1)[0]
    if root in ("methods", "metrics"):
        raise ConfigError(
            f"{key}={target} is not valid: this project's {root} are bench.{root} (a {root}.py of "
            f"your own cannot shadow them); did you mean {key}={_named_like(target)}?"
        )
    if root not in ROOTS:
        raise ConfigError(
            f"{key}={target} is not valid: a config may not run code outside this project; "
            f"accepted: {_hint(key)}."
        )
    try:
        obj = _resolve(target.replace(":", "."))
    except (ImportError, AttributeError, ValueError) as err:
        same = _named_like(target)
        hint = f" Did you mean {key}={same}?" if same != f"bench.{target}" else ""
        raise ConfigError(
            f"{key}={target} cannot be found ({type(err).__name__}: {err}).{hint} "
            f"Accepted: {_hint(key)}."
        ) from err
    try:
        known = obj in allowed_targets()
    except TypeError:  # an unhashable object
        known = False
    if not known and _where(obj) not in (*CALLBACKS, *HYDRA_TARGETS):
        raise ConfigError(
            f"{key}={target} is not valid: it names {_where(obj)}, which a config may not run; "
            f"accepted: {_hint(key)}."
        )
    return obj


def _named_like(target: str) -> str:
    """The allowed target whose name is the last part of ``target`` (a class that moved module,
    ``methods.perturbation.Lime`` -> ``bench.methods.superpixel.Lime``), else ``bench.<target>``."""
    last = target.replace(":", ".").rsplit(".", 1)[-1]
    same = sorted(
        _where(obj) for obj in allowed_targets() if getattr(obj, "__name__", None) == last
    )
    return same[0] if len(same) == 1 else f"bench.{target}"


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted key, key, value)`` of every item below ``node`` (a plain container)."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key, k, v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            key = f"{prefix}[{i}]"
            yield key, i, v
            yield from _walk(v, key)


def _plain(cfg: Any) -> Any:
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=False)
    return cfg


def check_targets(node: Any, prefix: str = "") -> None:
    """Every ``_target_`` below ``node`` (a plain container, e.g. an override's value) and every
    node-building resolver, checked as :func:`check_config` checks them."""
    for key, name, value in _walk(node, prefix):
        if isinstance(value, str) and NODE_RESOLVERS.search(value):
            raise ConfigError(
                f"{key}={value} is not valid: oc.decode and oc.create build config nodes from text, "
                "which a config may not do here; accepted: the values written out."
            )
        if name == "_target_":
            check_target(key, value)


def check_config(cfg: Any, trust_code: bool | None = None) -> None:
    """Refuse, in one line, anything in ``cfg`` (a job config, with or without its ``hydra``
    node) that would run code this project did not choose; see the module's docstring."""
    tree = _plain(cfg)
    if not isinstance(tree, dict):
        return
    if trust_code is None:
        trust_code = tree.get("trust_code") is True
    check_targets(tree)
    _check_model(tree.get("model"), trust_code)
    hydra = tree.get("hydra")
    if isinstance(hydra, dict):
        _check_hydra(hydra, trust_code)


def _check_model(model: Any, trust_code: bool) -> None:
    if not isinstance(model, dict) or "module" not in model:
        return
    module = model["module"]
    if module in (None, "???"):
        return
    if not trust_code:
        raise ConfigError(
            f"model.module={module} imports and runs code from your module; accepted with "
            f"{OPT_IN} (the one opt-in for code of your own; a reviewer sees it in the config)."
        )
    if not isinstance(module, str) or "${" in module:
        raise ConfigError(
            f"model.module={module!r} is not valid; accepted: an import path written out, "
            "package.module.ClassName."
        )


def _check_hydra(hydra: dict, trust_code: bool) -> None:
    for section in ("job_logging", "hydra_logging"):
        _check_logging(f"hydra.{section}", hydra.get(section))
    job = hydra.get("job") if isinstance(hydra.get("job"), dict) else {}
    env = job.get("env_set") or {}
    if isinstance(env, dict) and not trust_code:
        for name in env:
            if str(name) not in SAFE_ENV:
                raise ConfigError(
                    f"hydra.job.env_set.{name} is not valid: an environment variable can make a "
                    f"process load code (LD_PRELOAD, PYTHONPATH, ...); accepted without {OPT_IN}: "
                    f"{', '.join(sorted(SAFE_ENV))}."
                )
    for entry in hydra.get("searchpath") or []:
        check_search_path(str(entry))
    launcher = hydra.get("launcher")
    if isinstance(launcher, dict) and not trust_code:
        _check_launcher(launcher)


def _check_launcher(launcher: dict) -> None:
    for key in SHELL_KEYS:
        if launcher.get(key):
            raise ConfigError(
                f"hydra.launcher.{key}={launcher[key]} holds shell lines that every job runs; "
                f"accepted with {OPT_IN} (a reviewer sees it in the config)."
            )
    for arg in launcher.get("srun_args") or []:
        if str(arg).split("=", 1)[0] in SRUN_PROGRAMS:
            raise ConfigError(
                f"hydra.launcher.srun_args={arg} makes srun run a program; accepted with {OPT_IN}."
            )
    extra = launcher.get("additional_parameters") or {}
    if isinstance(extra, dict):
        for name in extra:
            if str(name).replace("-", "_") in SBATCH_PROGRAMS:
                raise ConfigError(
                    f"hydra.launcher.additional_parameters.{name} makes Slurm run a program; "
                    f"accepted with {OPT_IN}."
                )
    ray = launcher.get("ray")
    if isinstance(ray, dict):
        for part, keys in RAY_KEYS.items():
            node = ray.get(part) or {}
            for name in node if isinstance(node, dict) else ():
                if name not in keys:
                    raise ConfigError(
                        f"hydra.launcher.ray.{part}.{name} is not valid without {OPT_IN} (Ray can "
                        f"run code from it); accepted: {', '.join(sorted(keys))}."
                    )


def _check_logging(key: str, node: Any) -> None:
    """Logging's dictConfig calls ``()`` and ``class`` and imports ``ext://`` names."""
    if not isinstance(node, dict):
        return
    for path, name, value in _walk(node, key):
        if name in ("()", "class"):
            obj = None
            if isinstance(value, str) and value.split(".", 1)[0] in ("logging", "colorlog"):
                try:
                    obj = _resolve(value)
                except (ImportError, AttributeError):
                    obj = None
            ok = (
                inspect.isclass(obj)
                and issubclass(obj, logging.Handler | logging.Formatter | logging.Filter)
                and obj.__module__ in LOGGING_MODULES
            )
            if not ok:
                raise ConfigError(
                    f"{path}={value} is not valid: logging would call it; accepted: a handler, "
                    "formatter or filter class of the logging module (logging.StreamHandler, ...)."
                )
        elif isinstance(value, str) and value.startswith("ext://") and value not in LOGGING_EXT:
            raise ConfigError(
                f"{path}={value} is not valid: logging would import it; accepted: "
                f"{', '.join(LOGGING_EXT)}."
            )


def check_search_path(entry: str) -> None:
    """A ``hydra.searchpath`` entry: files anywhere, packages only Hydra's and ours."""
    if entry.startswith("pkg://"):
        package = entry[len("pkg://") :].replace("/", ".").split(".", 1)[0]
        if package not in SEARCH_PACKAGES:
            raise ConfigError(
                f"hydra.searchpath={entry} is not valid: Hydra would import {package} to read it; "
                f"accepted: file://<folder> (config files only), or pkg:// of "
                f"{', '.join(SEARCH_PACKAGES)}."
            )


# --- Hydra: check every config it composes, before it is used ---------------------------------


@contextmanager
def guarded() -> Iterator[None]:
    """While active, every config Hydra composes (the run's, the sweep's, each job's) is checked
    by :func:`check_config` before Hydra configures logging, creates callbacks or a launcher,
    and a ``pkg://`` search path is checked before Hydra imports it."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.importlib_resources_config_source import (
        ImportlibResourcesConfigSource,
    )

    load = ConfigLoaderImpl.load_configuration
    init = ImportlibResourcesConfigSource.__init__

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        cfg = load(self, *args, **kwargs)
        check_config(cfg)
        return cfg

    def source_init(self, provider: str, path: str) -> None:
        check_search_path(path if path.startswith("pkg://") else f"pkg://{path}")
        init(self, provider, path)

    ConfigLoaderImpl.load_configuration = load_configuration  # type: ignore[method-assign]
    ImportlibResourcesConfigSource.__init__ = source_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        ConfigLoaderImpl.load_configuration = load  # type: ignore[method-assign]
        ImportlibResourcesConfigSource.__init__ = init  # type: ignore[method-assign]
