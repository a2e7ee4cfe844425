"""The top-level run knobs: the keys a job config has (Hydra refuses others without ``+``).

Types and ranges are checked by :func:`bench.config.validate.check_run_keys`, which says in one line what
is accepted (Hydra's typed errors span several lines and would coerce ``keep_freed_memory=2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from bench.core.resolvers import register_resolvers


@dataclass
class RunSchema:
    model: Any = None
    dataset: Any = None
    method: Any = None
    metric: Any = field(default_factory=dict)
    device: Any = "cpu"
    precision: Any = "fp32"
    batch_size: Any = 32
    chunk_size: Any = "auto"
    max_memory: Any = "auto"
    channels_last: Any = False
    compile: Any = False
    warmup_batches: Any = 1
    num_workers: Any = 0
    seed: Any = 0
    explain: Any = "label"
    save_maps: Any = False
    keep_freed_memory: Any = True
    cache: Any = "readwrite"
    cache_dtype: Any = "float32"
    unfit: Any = "fail"
    tag: Any = ""
    trust_code: Any = False
    paths: Any = field(default_factory=dict)
    logger: Any = field(default_factory=dict)


def register() -> None:
    """Store the schema and register ``${bench_uid:}`` (the run and sweep folders' suffix)."""
    ConfigStore.instance().store(name="schema", node=RunSchema)
    register_resolvers()
