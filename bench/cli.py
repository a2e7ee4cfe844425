"""The ``bench`` console script: Hydra's main, with one-line errors for misspelt choices."""

from __future__ import annotations

import sys

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from hydra.errors import HydraException
from omegaconf import DictConfig

from bench.core.errors import ConfigError, choice_error
from bench.core.paths import ROOT
from bench.schema import register

CONF = ROOT / "conf"
GROUPS = ("model", "dataset", "method", "metric", "experiment")
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


def check_overrides(argv: list[str]) -> list[str]:
    """``argv`` with group sweeps made to skip base files; a ``group=value`` override whose value
    is not an option of the group is a one-line ConfigError."""
    parser = OverridesParser.create()
    out = []
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.")):
            out.append(arg)
            continue
        key, value = arg.split("=", 1)
        if key not in GROUPS or value in ("null", ""):
            out.append(arg)
            continue
        try:
            parsed = parser.parse_override(arg).value()
        except HydraException:
            out.append(arg)  # Hydra reports its own syntax errors
            continue
        if isinstance(parsed, Glob):
            out.append(_glob(key, parsed))
            continue
        if value.startswith(("[", "choice(", "range(")):
            value = value.split("(", 1)[-1].rstrip(")").strip("[]")
        for v in (x.strip() for x in value.split(",")):
            if v and v not in options(key):
                raise choice_error(key, v, options(key))
        out.append(arg)
    return out


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from bench.run import task

    task(cfg)


def main() -> None:
    """Entry point of ``bench`` and ``python -m bench``."""
    register()
    try:
        sys.argv[1:] = check_overrides(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
