"""The ``bench`` console script: Hydra's main, with one-line errors for misspelt choices."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bench.config.launchers import quiet_schema_matching
from bench.config.overrides import CONF, MULTIRUN_FLAGS, check_overrides, snapshot_config
from bench.config.schema import register
from bench.config.trust import guarded
from bench.config.validate import SNAPSHOT_ENV, user_error
from bench.core.errors import ConfigError


def _task(cfg: DictConfig) -> None:
    from bench.cli.job import task  # torch and the engine: only once a job runs

    task(cfg)


def _hydra_main(config_dir: Path):
    return hydra.main(config_path=str(config_dir), config_name="config", version_base="1.3")(_task)


def main() -> None:
    """Entry point of ``bench`` and ``python -m bench``: every configuration error is one line on
    stderr and exit status 2 (``HYDRA_FULL_ERROR=1`` shows Hydra's own report instead)."""
    register()
    quiet_schema_matching()
    raw = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; we report below
    snapshot = None
    try:
        sys.argv[1:] = check_overrides(sys.argv[1:])
        config_dir = CONF
        if any(a in MULTIRUN_FLAGS for a in sys.argv[1:]):
            snapshot = Path(tempfile.mkdtemp(prefix="bench-conf-"))
            sys.argv[1:], config_dir = snapshot_config(sys.argv[1:], snapshot / "conf")
            os.environ[SNAPSHOT_ENV] = str(config_dir)
        with guarded():
            _hydra_main(config_dir)()
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        user = user_error(err)
        if raw or user is None:
            raise
        print(f"error: {user}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # an output folder that cannot be made or written: Hydra's own files
        if raw:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(
            f"error: cannot write{where} ({err.strerror or err}); choose a writable folder with "
            "paths.output_root=<folder> (or hydra.run.dir= / hydra.sweep.dir=).",
            file=sys.stderr,
        )
        sys.exit(1)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the job's record says what was kept
        if raw:
            raise
        print(
            f"interrupted ({err or 'Ctrl-C'}): the rows computed so far are kept in "
            "scores.csv.partial and the record says status interrupted.",
            file=sys.stderr,
        )
        sys.exit(130)
    finally:
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)


if __name__ == "__main__":
    main()
