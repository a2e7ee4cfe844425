"""Validation of a composed job config before anything is loaded: one line per problem.

:func:`validate` checks what can be checked without loading a model or reading data: every
mandatory value is set, nothing in it would run code this project did not choose
(:func:`bench.config.trust.check_config`), every top-level value has
its type and range, no key is unknown (``+key=value`` included), the groups are present, every
method and metric constructs. The runner calls it first; the sweeper (:mod:`bench.sweeper`)
calls it on every job of a sweep before the first one starts (:func:`check_sweep`, from the
Hydra callback of :mod:`bench.cli.callbacks`). :func:`one_line` turns Hydra's
multi-line composition errors into one line that names the key.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import shutil
import typing
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from bench.config.schema import RunSchema
from bench.config.trust import check_config
from bench.core.context import (
    PRECISIONS,
    check_chunk_size,
    check_compile,
    memory_bytes,
    resolve_device,
)
from bench.core.errors import (
    ConfigError,
    check_bool,
    check_choice,
    check_int,
    choice_error,
    first_line,
)
from bench.data.subset import ON_BAD_SAMPLE, SUBSET_KEYS
from bench.models import PREPROCESSING
from bench.models.meta import image_size

EXPLAIN = ("label", "prediction")
CACHE_MODES = ("readwrite", "read", "off")
CACHE_DTYPES = ("float32", "float16")
#: What a job does when its method cannot apply to its model (bench.core.errors.Unfit).
UNFIT_MODES = ("fail", "skip")
PATH_KEYS = ("data_root", "output_root", "cache_root")
GROUPS = ("model", "dataset", "method")
RUN_KEYS = [f.name for f in fields(RunSchema)]
SEED_MAX = 2**63 - 1


#: The experiment loggers (conf/logger/) and TensorBoard's folder below a job's.
LOGGERS = ("none", "tensorboard")
TENSORBOARD_DIR = "tensorboard"


def check_logger(kind: str, **options: Any) -> None:
    """Refuse, in one line and before any compute, a logger that is not known, whose package is
    not installed, or whose options (``logger.dir``, ``logger.maps``) are not valid."""
    check_choice("logger", kind, LOGGERS)
    if kind == "none":
        return
    unknown = sorted(set(options) - {"dir", "maps"})
    if unknown:
        raise ConfigError(
            f"logger.{unknown[0]} is not a key of logger={kind}; accepted: logger.dir, logger.maps."
        )
    check_int("logger.maps", options.get("maps", 4), minimum=0)
    d = options.get("dir", TENSORBOARD_DIR)
    if not isinstance(d, str) or not d or Path(d).is_absolute() or ".." in Path(d).parts:
        raise ConfigError(
            f"logger.dir={d!r} is not valid; accepted: a folder name below the job's folder."
        )
    if kind == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ConfigError(
                "logger=tensorboard needs the tensorboard package, which is not installed; "
                "accepted: pip install 'attribution-bench[tensorboard]' (or tensorboard==2.21.0), "
                "or logger=none."
            ) from None


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys of ``cfg`` left at ``???`` (the mandatory values nobody set)."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{prefix}[{i}]")
        elif node == "???":
            out.append(prefix)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


def check_complete(cfg: DictConfig) -> None:
    """One line naming every mandatory value (``???``) that is not set."""
    missing = missing_keys(cfg)
    if missing:
        one = len(missing) == 1
        raise ConfigError(
            f"{', '.join(missing)} {'is' if one else 'are'} not set (??? in the config); set "
            f"{'it' if one else 'them'} on the command line, e.g. {missing[0]}=<value>."
        )


def check_run_keys(cfg: DictConfig) -> None:
    """Types and ranges of the top-level keys; a key nothing reads (``+batchsize=4``) is refused."""
    unknown = [k for k in cfg if k not in RUN_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), RUN_KEYS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"{unknown[0]} is not a key this tool reads.{hint} Accepted top-level keys: "
            f"{', '.join(RUN_KEYS)}."
        )
    absent = [k for k in RUN_KEYS if k not in cfg]
    if absent:
        raise ConfigError(
            f"{absent[0]} is not set (removed with ~{absent[0]}?); a job needs every top-level key: "
            f"{', '.join(RUN_KEYS)}."
        )
    check_choice("precision", cfg.precision, PRECISIONS)
    check_int("batch_size", cfg.batch_size, minimum=1)
    check_chunk_size(cfg.chunk_size)
    memory_bytes(cfg.max_memory)
    check_bool("channels_last", cfg.channels_last)
    check_compile(cfg.compile)
    check_int("warmup_batches", cfg.warmup_batches, minimum=0)
    check_int("num_workers", cfg.num_workers, minimum=0)
    check_int("seed", cfg.seed, minimum=0, maximum=SEED_MAX)
    check_choice("explain", cfg.explain, EXPLAIN)
    check_bool("save_maps", cfg.save_maps)
    check_bool("trust_code", cfg.trust_code)
    check_bool("keep_freed_memory", cfg.keep_freed_memory)
    check_choice("cache", cfg.cache, CACHE_MODES)
    check_choice("cache_dtype", cfg.cache_dtype, CACHE_DTYPES)
    check_choice("unfit", cfg.unfit, UNFIT_MODES)
    for key in PATH_KEYS:
        value = cfg.paths.get(key) if isinstance(cfg.paths, DictConfig) else None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"paths.{key}={value!r} is not valid; accepted: a folder path.")
    if not isinstance(cfg.device, str):
        raise ConfigError(f"device={cfg.device!r} is not valid; accepted: cpu, cuda, cuda:N, mps.")
    resolve_device(cfg.device)
    if not isinstance(cfg.tag, str):
        raise ConfigError(f"tag={cfg.tag!r} is not valid; accepted: a string.")


def _unpacked_keys(fn: Any, annotation: Any) -> set[str] | None:
    """The keys of the TypedDict of a ``**kwargs: Unpack[TypedDict]`` annotation (PEP 692) of
    ``fn``, a string one (``from __future__ import annotations``) resolved in ``fn``'s module;
    None for any other annotation, or one that does not resolve."""
    if isinstance(annotation, str):
        if "Unpack[" not in annotation:
            return None
        scope = getattr(inspect.unwrap(fn), "__globals__", None)
        try:
            annotation = eval(annotation, dict(scope or {}))  # noqa: S307 - the code's own annotation
        except Exception:  # noqa: BLE001 - unresolvable: any keyword, as before
            return None
    if getattr(typing.get_origin(annotation), "_name", None) != "Unpack":
        return None
    (typed,) = typing.get_args(annotation) or (None,)
    keys = getattr(typed, "__required_keys__", None), getattr(typed, "__optional_keys__", None)
    return None if None in keys else set(keys[0]) | set(keys[1])


def _parameters(target: Any) -> tuple[set[str], bool]:
    """The keyword arguments ``target`` accepts (following ``**kwargs`` passed to base classes,
    and reading the keys of ``**kwargs: Unpack[TypedDict]``), and whether it takes any keyword at
    all (a bare ``**kwargs`` signature)."""
    names: set[str] = set()
    chain = (
        [target]
        if not inspect.isclass(target)
        else [c for c in target.__mro__ if "__init__" in vars(c) and c is not object]
    )
    for fn in chain:
        fn = fn.__init__ if inspect.isclass(fn) else fn
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        var = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
        unpacked = None if var is None else _unpacked_keys(fn, var.annotation)
        if unpacked is not None:
            names |= unpacked
        if var is None or unpacked is not None:
            return names - {"self"}, False
    return names - {"self"}, True


def check_node_keys(key: str, node: DictConfig, extra: Iterable[str] = ()) -> None:
    """Refuse a key of ``node`` that its ``_target_`` does not take (typos, ``+key=value``)."""
    target = get_object(node._target_)
    accepted, anything = _parameters(target)
    if anything:
        return
    accepted |= {"_target_", *extra}
    for k in node:
        if k not in accepted:
            close = difflib.get_close_matches(str(k), sorted(accepted), n=1)
            hint = f" Did you mean {key}.{close[0]}?" if close else ""
            raise ConfigError(
                f"{key}.{k} is not a key of {node._target_}.{hint} Accepted: "
                f"{', '.join(sorted(accepted - {'_target_'}))}."
            )


def validate(cfg: DictConfig, construct: bool = True) -> None:
    """Every check that needs no model and no data; ``construct`` also builds the method and the
    metrics (cheap), so their value checks fail here too."""
    check_complete(cfg)
    check_run_keys(cfg)
    check_config(cfg)
    for group in GROUPS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"{group} is not set ({group}={node}); accepted: one of the {group} options "
                f"(conf/{group}/)."
            )
        check_node_keys(group, node, SUBSET_KEYS if group == "dataset" else ())
    metrics = cfg.get("metric")
    if not isinstance(metrics, DictConfig) or not metrics:
        raise ConfigError(
            "metric is empty: a job needs at least one metric; accepted: metric=[a,b,...] with "
            "options of conf/metric/."
        )
    for name, node in metrics.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"metric.{name} is not a metric config; accepted: an option of conf/metric/."
            )
        check_node_keys(f"metric.{name}", node)
    subset = cfg.dataset
    for k in ("limit", "sample"):
        if subset.get(k) is not None:
            check_int(f"dataset.{k}", subset[k], minimum=1)
    shards = check_int("dataset.num_shards", subset.get("num_shards", 1), minimum=1)
    shard = check_int("dataset.shard", subset.get("shard", 0), minimum=0)
    if shard >= shards:
        raise ConfigError(
            f"dataset.shard={shard} is not valid for dataset.num_shards={shards}; accepted: 0..{shards - 1}."
        )
    if "on_bad_sample" in subset:
        check_choice("dataset.on_bad_sample", subset.on_bad_sample, ON_BAD_SAMPLE)
    ids = subset.get("ids")
    if ids is not None and not isinstance(ids, str) and not OmegaConf.is_list(ids):
        raise ConfigError(
            f"dataset.ids={ids!r} is not valid; accepted: a list of ids or a file of ids, one a line."
        )
    raw = OmegaConf.to_container(cfg.model, resolve=False)
    if "input_size" in raw and not str(raw["input_size"]).startswith("${"):
        image_size(raw["input_size"])
    if construct:
        if needs_preprocessing(cfg):
            cfg = copy.deepcopy(cfg)
            fill_model_preprocessing(cfg)
        construct_node("method", cfg.method)
        for name, node in cfg.metric.items():
            construct_node(f"metric.{name}", node)


def needs_preprocessing(cfg: DictConfig) -> bool:
    """Whether ``cfg.model`` leaves its ``input_size``, ``mean`` or ``std`` to the model (null)."""
    node = cfg.model
    return any(k in node and node[k] is None for k in ("input_size", "mean", "std"))


def fill_model_preprocessing(cfg: DictConfig, strict: bool = True) -> None:
    """Set the null ``model.input_size``, ``mean``, ``std`` and ``resize_size`` of ``cfg`` to what
    the model's loader tells without building it (:data:`bench.models.PREPROCESSING`: timm's
    ``pretrained_cfg``, a Hugging Face image processor), so that everything reading them before
    the model exists (``${model.input_size[0]}``, ROAD's ``${model.mean}``, the job's hash) sees
    the model's own values; the loader then finds the same. Not ``strict`` (composing a config
    to look at it), a model node that is incomplete or wrong is left as it is: the checks and
    the loader say what is wrong."""
    if not needs_preprocessing(cfg):
        return
    node = cfg.model
    tell = PREPROCESSING.get(get_object(str(node._target_)))
    if tell is None:
        return
    if missing_keys(node):  # check_complete names them
        return
    args = OmegaConf.to_container(node, resolve=True)
    try:
        told = tell(**{k: args[k] for k in inspect.signature(tell).parameters if k in args})
    except ConfigError:
        if strict:
            raise
        return
    for key in ("input_size", "mean", "std", "resize_size"):
        if key in node and node[key] is None and key in told:
            node[key] = told[key]


def construct_node(key: str, node: DictConfig) -> Any:
    """``instantiate(node)``, a refused value reported with its full key (``metric.deletion.step``)."""
    try:
        return instantiate(node)
    except Exception as err:
        user = user_error(err)
        if user is None:
            raise
        text = str(user)
        head = re.match(r"([A-Za-z_][A-Za-z_0-9]*)(=| )", text)
        if head and head.group(1) in node:
            raw = OmegaConf.to_container(node, resolve=False)[head.group(1)]
            source = re.fullmatch(r"\$\{([^}]+)\}", str(raw))
            text = f"{key}.{text}" + (f" (it is {source.group(1)}, set there)" if source else "")
        raise ConfigError(text) from err


def user_error(err: BaseException) -> ConfigError | None:
    """The user-facing ConfigError behind ``err`` (Hydra wraps errors raised while instantiating;
    OmegaConf raises its own for broken interpolations), or None for a bug."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ConfigError):
            return seen
        seen = seen.__cause__
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, TypeError):
        # a key the constructor does not take, or a value of the wrong type
        key = [
            ln.split(":", 1)[1].strip()
            for ln in str(err).splitlines()
            if ln.startswith("full_key:")
        ]
        return ConfigError(f"{key[0] if key else 'config'}: {err.__cause__}")
    if isinstance(err, OmegaConfBaseException):
        key = getattr(err, "full_key", None)
        first = first_line(err)
        return ConfigError(f"{key}: {first}" if key else first)
    if isinstance(err, HydraException):
        return ConfigError(one_line(err))
    return None


def one_line(err: BaseException) -> str:
    """Hydra's composition error as one line that names the key and says what would do."""
    text = str(err)
    match = re.search(r"Could not override '([^']+)'", text)
    cause = err.__cause__
    if match and cause is not None and re.search(r"not in struct|not in 'RunSchema'", str(cause)):
        key = match.group(1)
        if "." not in key:
            close = difflib.get_close_matches(key, RUN_KEYS, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            return f"{key} is not a key of the config.{hint} Accepted top-level keys: {', '.join(RUN_KEYS)}."
        parent = getattr(cause, "parent_node", None)
        keys = [str(k) for k in parent.keys() if not str(k).startswith("_")] if parent else []
        head, _, last = key.rpartition(".")
        close = difflib.get_close_matches(last, keys, n=1)
        hint = f" Did you mean {head}.{close[0]}?" if close else ""
        accepted = f" Accepted keys of {head}: {', '.join(sorted(keys))}." if keys else ""
        return f"{key} is not a key of the config.{hint}{accepted}"
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:  # a group option that does not exist: the whole list Hydra shows, on one line
        group, name = missing.groups()
        listed = re.search(r"Available options in '[^']+':\n((?:\t[^\n]*\n?)*)", text)
        options = [o.strip() for o in (listed.group(1) if listed else "").splitlines()]
        options = [o for o in options if o and not o.startswith("_")]
        return (
            str(choice_error(group, name, options))
            if options
            else (f"{group}={name} is not valid: conf/{group}/ has no option {name}.")
        )
    if match:
        first = first_line(cause) if cause is not None else ""
        return f"{match.group(1)}: {first or text.splitlines()[0]}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:2]) if lines else type(err).__name__


def sweep_jobs(config: DictConfig, loader: Any) -> list[list[str]]:
    """The override lists of every job a multirun of ``config`` launches (Hydra's basic sweeper's
    expansion of ``hydra.sweeper.params`` and the command line's sweeps)."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    arguments = [*params, *config.hydra.overrides.task]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [list(job) for job in BasicSweeper.split_arguments(parsed, None)[0]]


#: Set by ``bench -m`` to the copy of the config folder its jobs compose from (bench/cli.py).
SNAPSHOT_ENV = "BENCH_CONF_SNAPSHOT"
#: Where a sweep folder keeps that copy.
SNAPSHOT_DIR = ".conf"


def keep_snapshot(sweep_dir: Path) -> None:
    """Copy the sweep's config snapshot into ``<sweep_dir>/.conf`` (what its jobs composed from)."""
    snapshot = os.environ.get(SNAPSHOT_ENV)
    if not snapshot or not Path(snapshot).is_dir():
        return
    dest = sweep_dir / SNAPSHOT_DIR
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(snapshot, dest)


def check_sweep(config: DictConfig) -> None:
    """Compose and :func:`validate` every job of the sweep ``config`` (its hydra node checked by
    :func:`bench.config.trust.check_config` too), so a bad value in the 50th job fails before the
    first starts; an empty sweep is an error."""
    loader = GlobalHydra.instance().config_loader()
    jobs = sweep_jobs(config, loader)
    if not jobs:
        raise ConfigError(
            f"the sweep has no jobs: {' '.join(config.hydra.overrides.task)} selects no option "
            "(a glob that matches nothing, or an empty list)."
        )
    for overrides in jobs:
        try:
            cfg = loader.load_sweep_config(master_config=config, sweep_overrides=overrides)
            check_config(cfg)  # the job's hydra node too (its logging, environment)
            with open_dict(cfg):
                del cfg["hydra"]
            validate(cfg)
        except (ConfigError, HydraException, OmegaConfBaseException) as err:
            raise ConfigError(f"job {' '.join(overrides)}: {user_error(err) or err}") from err
