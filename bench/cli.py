"""The ``bench`` console script: Hydra's main, with one-line errors for misspelt choices."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from bench import ROOT
from bench.errors import ConfigError, choice_error
from bench.schema import register

CONF = ROOT / "conf"
GROUPS = ("model", "dataset", "method", "metric", "experiment")


def options(group: str) -> list[str]:
    """The options of a config group: its YAML file names (the config tree is the registry)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def check_overrides(argv: list[str]) -> None:
    """Reject ``group=value`` overrides whose value is not an option of the group, in one line."""
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.")):
            continue
        key, value = arg.split("=", 1)
        if key not in GROUPS or value in ("null", ""):
            continue
        if value.startswith(("[", "choice(", "range(", "glob(")):
            value = value.split("(", 1)[-1].rstrip(")").strip("[]")
            if "*" in value:
                continue
        for v in (x.strip() for x in value.split(",")):
            if v and v not in options(key):
                raise choice_error(key, v, options(key))


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from bench.run import task

    task(cfg)


def main() -> None:
    """Entry point of ``bench`` and ``python -m bench``."""
    register()
    try:
        check_overrides(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
