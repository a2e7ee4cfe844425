"""The command line's overrides, checked before Hydra sees them: a group option that does not
exist, a ``_target_`` a config may not name, a refused flag are one-line ConfigErrors; glob sweeps
skip the groups' base files, and a glob over methods skips the jobs whose method cannot apply to
the model (``unfit=skip``, unless set); a sweep composes from a snapshot of the config folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bench.config.compose import compose
from bench.config.trust import check_search_path, check_target, check_targets
from bench.config.validate import user_error, validate
from bench.core.errors import ConfigError, choice_error
from bench.core.paths import CONF_DIR

CONF = CONF_DIR
GROUPS = ("model", "dataset", "method", "metric", "experiment", "logger")
#: The groups every job needs one option of (``metric``: at least one).
NEEDED = ("model", "dataset", "method", "metric", "logger")
#: Config files whose name starts with this are base configs (``defaults:`` targets), not options.
BASE_PREFIX = "_"


def options(group: str) -> list[str]:
    """The options of a config group: its YAML file names (the config tree is the registry),
    without the ``_``-prefixed base files the others extend."""
    return sorted(
        p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith(BASE_PREFIX)
    )


def _glob(key: str, glob: Glob) -> str:
    """``key=glob(...)`` that also excludes the group's base files."""
    exclude = [*glob.exclude, f"{BASE_PREFIX}*"]
    return f"{key}=glob([{','.join(glob.include)}],exclude=[{','.join(exclude)}])"


def check_override_targets(parser: OverridesParser, arg: str) -> None:
    """Refuse an override that sets a ``_target_`` a config may not name (bench/trust.py), or a
    ``pkg://`` search path, before Hydra sees it: Hydra would call or import it first. (The
    composed config is checked as a whole too, whatever route its values took.)"""
    try:
        override = parser.parse_override(arg)
    except HydraException:
        return  # Hydra reports its own syntax errors
    key = override.key_or_group
    try:
        values = (
            list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        )
    except HydraException:
        values = [override.value()]
    for value in values:
        if key.split(".")[-1] == "_target_":
            check_target(key, value)
        elif isinstance(value, dict | list):
            check_targets(value, key)
        elif isinstance(value, str):
            head, _, last = key.rpartition(".")
            check_targets({last: value}, head)
        if key == "hydra.searchpath":
            for entry in value if isinstance(value, list) else [value]:
                check_search_path(str(entry))


#: Hydra flags this tool does not take: ``--experimental-rerun`` unpickles a file.
REFUSED_FLAGS = ("--experimental-rerun",)


def sets_key(argv: list[str], key: str) -> bool:
    """Whether an override of ``argv`` sets the top-level ``key`` (``key=``, ``+key=``, ``++key=``)."""
    return any(
        a.split("=", 1)[0].lstrip("+~") == key for a in argv if "=" in a or a.startswith("~")
    )


def check_overrides(argv: list[str]) -> list[str]:
    """``argv`` with group sweeps made to skip base files, and ``unfit=skip`` added to a glob sweep
    over methods (a method the glob picks that cannot apply to the model is skipped, listed as not
    applicable; unless the command line sets ``unfit``); a ``group=value`` override whose value
    is not an option of the group is a one-line ConfigError."""
    parser = OverridesParser.create()
    out = []
    unfit_set = sets_key(argv, "unfit")
    for arg in argv:
        if arg.split("=", 1)[0] in REFUSED_FLAGS:
            raise ConfigError(
                f"{arg.split('=', 1)[0]} is not accepted: it unpickles a file, which can run any "
                "code; re-run a job from its folder instead (bench ... hydra.run.dir=<folder>)."
            )
        if "=" in arg and not arg.startswith("-"):
            check_override_targets(parser, arg)
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.")):
            out.append(arg)
            continue
        key, value = arg.split("=", 1)
        if key in NEEDED and value in ("null", ""):
            what = "at least one metric" if key == "metric" else f"a {key}"
            raise ConfigError(
                f"{key}={value or 'null'} is not valid: a job needs {what}; accepted: "
                f"{', '.join(options(key))}" + (" (metric=[a,b,...])." if key == "metric" else ".")
            )
        if key not in GROUPS or value in ("null", ""):
            out.append(arg)
            continue
        try:
            parsed = parser.parse_override(arg)
            if isinstance(parsed.value(), Glob):
                out.append(_glob(key, parsed.value()))
                if key == "method" and not unfit_set:
                    out.append("unfit=skip")
                    unfit_set = True
                continue
            items = (
                list(parsed.sweep_iterator()) if parsed.is_sweep_override() else [parsed.value()]
            )
        except HydraException:
            out.append(arg)  # Hydra reports its own syntax errors
            continue
        names = [v for item in items for v in (item if isinstance(item, list) else [item])]
        for v in names:
            if str(v) not in options(key):
                raise choice_error(key, v, options(key))
        out.append(arg)
    return out


def preflight(argv: list[str]) -> DictConfig:
    """What ``bench <argv>`` checks before a single job starts, in-process: the overrides, the
    composition, :func:`bench.config.validate.validate`. Returns the job config; a ConfigError otherwise."""
    argv = check_overrides(argv)
    try:
        cfg = compose(*argv, resolve=False)
    except (HydraException, OmegaConfBaseException) as err:
        raise (user_error(err) or ConfigError(str(err))) from err
    validate(cfg)
    return cfg


#: Hydra's flags for a sweep, and for another primary config folder.
MULTIRUN_FLAGS = ("-m", "--multirun")
CONFIG_PATH_FLAGS = ("-cp", "--config-path")


def snapshot_config(argv: list[str], into: Path) -> tuple[list[str], Path]:
    """For a sweep: copy the primary config folder (ours, or ``--config-path``'s) into ``into``
    so every job composes from the files as they were at launch, whatever is edited meanwhile
    (Hydra's basic launcher composes each job only when it starts). Returns ``argv`` pointing at
    the copy and the copy."""
    argv, source = list(argv), CONF
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag in CONFIG_PATH_FLAGS:
            if value:
                source, argv[i] = Path(value), f"{flag}={into}"
            elif i + 1 < len(argv):
                source, argv[i + 1] = Path(argv[i + 1]), str(into)
    source = source if source.is_absolute() else Path.cwd() / source
    if source.is_dir():
        shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__"))
    return argv, into
