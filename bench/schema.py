"""Typed schema of the top-level run knobs, so ``batch_size=abc`` is rejected by Hydra with a typed error."""

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
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 32
    chunk_size: int = 256
    num_workers: int = 0
    seed: int = 0
    explain: str = "label"
    save_maps: bool = False
    keep_freed_memory: bool = True
    tag: str = ""


def register() -> None:
    ConfigStore.instance().store(name="schema", node=RunSchema)
