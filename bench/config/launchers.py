"""What the launcher configs of ``conf/hydra/launcher/`` need beside Hydra's plugins.

Every job of a sweep composes its config again, in the process (and on the machine) that runs
it, and ``hydra.sweep.dir`` is ``${paths.output_root}/sweeps/...``: ``${oc.env:BENCH_OUTPUT_ROOT,
results}`` and a relative path resolve against that process's environment and working
directory. A Ray cluster's workers have the environment ``ray start`` was given, not the
launching shell's, so their jobs would write to another folder than the one collated (seen with
``BENCH_OUTPUT_ROOT`` set in the shell). :func:`pin_sweep_dir`, called by a callback (:mod:`bench.cli.callbacks`) that
``hydra/launcher=ray`` and ``submitit_slurm`` add, resolves the folder once, in the launching
process, and adds it to the Hydra overrides every job is composed with. (``${now:...}`` and
``${bench_uid:}`` need no help: Hydra copies their cached values into each job's config.)

Hydra instantiates launchers only from the ``hydra_plugins`` package, so the launchers
themselves are the plugins' classes: hydra-submitit-launcher 1.2.0 passes every key its schema
does not declare to submitit as ``slurm_<key>``, so ``srun_args`` reaches submitit 1.5.4 once the
config declares it (``_submitit_slurm_keys.yaml``, merged before the schema; hydra#2719).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import DictConfig, open_dict, read_write

#: Hydra 1.3 warns that a config file named like a plugin's ConfigStore node (our
#: ``hydra/launcher/submitit_slurm.yaml`` and ``ray.yaml``) is validated against that node (the
#: "automatic schema matching" it deprecated); that validation is what we want, the warning is noise.
SCHEMA_MATCHING = (
    r"\s*'hydra/launcher/(submitit_slurm|ray)' is validated against ConfigStore schema"
)


def quiet_schema_matching() -> None:
    """Silence Hydra's schema-matching warning for our launcher configs (:data:`SCHEMA_MATCHING`)."""
    warnings.filterwarnings("ignore", message=SCHEMA_MATCHING, category=UserWarning)


quiet_schema_matching()  # a submitit job unpickles PinSweepDir before it composes its config


def _quote(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pin_sweep_dir(config: DictConfig) -> str:
    """Resolve ``hydra.sweep.dir`` of the sweep's ``config`` here, as an absolute path, write it
    back and add ``hydra.sweep.dir=<it>`` to the Hydra overrides every job's config is composed
    with; returns the folder."""
    sweep_dir = str(Path(str(config.hydra.sweep.dir)).absolute())
    override = f"hydra.sweep.dir={_quote(sweep_dir)}"
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = sweep_dir
        if override not in config.hydra.overrides.hydra:
            config.hydra.overrides.hydra.append(override)
    return sweep_dir
