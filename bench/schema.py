"""The top-level run knobs: the keys a job config has (Hydra refuses others without ``+``).

Types and ranges are checked by :func:`bench.validate.check_run_keys`, which says in one line what
is accepted (Hydra's typed errors span several lines and would coerce ``keep_freed_memory=2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class RunSchema:
    model: Any = None
    dataset: Any = None
    method: Any = None
    metric: Any = field(default_factory=dict)
    device: Any = "cpu"
    precision: Any = "fp32"
    batch_size: Any = 32
    chunk_size: Any = 256
    num_workers: Any = 0
    seed: Any = 0
    explain: Any = "label"
    save_maps: Any = False
    keep_freed_memory: Any = True
    tag: Any = ""


def register() -> None:
    ConfigStore.instance().store(name="schema", node=RunSchema)
