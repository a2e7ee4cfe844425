"""The generic half of the settings tests (tests/methods/test_settings.py, tests/metrics/test_settings.py):
walk every key of a composed config and derive values to change it to.

A config is a plain container (``OmegaConf.to_container`` of a composed node); a key is a path of
names (``("method", "reduction")`` for a noise tunnel's wrapped method). Alternatives are derived
from the value itself and validated by the class: a number is scaled (x2, then /2; 0 becomes 0.5
or 1), a boolean flipped, a string with a choice list replaced by each other accepted choice (the
list is read from the class's own :func:`bench.core.errors.choice_error`, so it never goes stale),
a list of numbers scaled element-wise, a list of choices shortened or swapped. Every candidate the
constructor refuses is dropped. What cannot be derived (``null``, a layer name, a file) comes
from the test's explicit table of overrides.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Path = tuple[str, ...]
#: A value no choice list holds: the class's error then lists the accepted ones.
BOGUS = "__no_such_choice__"
#: How many derived candidates are tried for a key before it counts as "does not reach the code".
MAX_CANDIDATES = 7


def leaves(node: dict, prefix: Path = ()) -> Iterator[Path]:
    """Every key of ``node`` as a path, nested nodes (a wrapped method) walked into; the top-level
    ``_target_`` is the object itself, not a setting, and is left out."""
    for key, value in node.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            yield from leaves(value, path)
        elif path != ("_target_",):
            yield path


def get(node: dict, path: Path) -> Any:
    for key in path:
        node = node[key]
    return node


@dataclass(frozen=True)
class Together:
    """An alternative that changes several keys at once (dotted key -> value), for a key that
    cannot change alone (a wrapped method's class, whose other keys must fit it)."""

    changes: dict[str, Any]


def with_values(node: dict, changes: dict[Path, Any]) -> dict:
    """A deep copy of ``node`` with each path set to its value (a :class:`Together` sets its own
    keys instead)."""
    out = copy.deepcopy(node)
    flat: dict[Path, Any] = {}
    for path, value in changes.items():
        if isinstance(value, Together):
            flat.update({tuple(k.split(".")): v for k, v in value.changes.items()})
        else:
            flat[path] = value
    for path, value in flat.items():
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = copy.deepcopy(value)
    return out


def accepts(build: Callable[[dict], Any], node: dict) -> bool:
    """Whether the class builds from ``node`` (its constructor validates every key)."""
    try:
        build(node)
    except Exception:  # noqa: BLE001 - a ConfigError, wrapped by Hydra's instantiate or not
        return False
    return True


def choices(build: Callable[[dict], Any], node: dict, path: Path) -> list[str] | None:
    """The accepted values of a choice key, as the class's own error lists them; None when the key
    has no choice list (any string is accepted at construction)."""
    try:
        build(with_values(node, {path: BOGUS}))
    except Exception as err:  # noqa: BLE001
        found = re.search(
            rf"{re.escape(path[-1])}={BOGUS} is not valid; accepted: ([^.]*)\.", str(err)
        )
        if found and " or " not in found.group(1):
            return found.group(1).split(", ")
    return None


def _scaled(value: int | float) -> list[int | float]:
    if isinstance(value, int):
        return [1, 2] if value == 0 else [2 * value, value // 2, value + 1]
    return [0.5, 1.0] if value == 0 else [2 * value, value / 2]


def candidates(build: Callable[[dict], Any], node: dict, path: Path) -> list[Any]:
    """Derived values for ``path`` other than its current one, each accepted by the class."""
    value = get(node, path)
    if isinstance(value, bool):
        raw: list[Any] = [not value]
    elif isinstance(value, int | float):
        raw = _scaled(value)
    elif isinstance(value, str):
        raw = [c for c in choices(build, node, path) or [] if c != value]
    elif isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        raw = [[s[i] for s in map(_scaled, value)] for i in range(2)]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        listed = choices(build, node, path) or []
        raw = ([value[:-1]] if len(value) > 1 else []) + [[c] for c in listed if c not in value]
    else:  # None, an empty list, a mapping: nothing to derive from
        raw = []
    out = []
    for v in raw:
        if v != value and v not in out and accepts(build, with_values(node, {path: v})):
            out.append(v)
    return out[:MAX_CANDIDATES]


def dotted(path: Path) -> str:
    return ".".join(path)


def same_map(a: Tensor, b: Tensor) -> bool:
    """Maps ``[B, H, W]`` equal within 1e-5 of the first one's largest magnitude (the batching
    contract of tests/methods/test_catalogue.py)."""
    if a.shape != b.shape:
        return False
    scale = a.abs().max().clamp_min(1e-12)
    return bool(((a - b).abs() <= 1e-5 * scale).all())


def flatten_output(out: Any) -> dict[str, Tensor]:
    """A metric's output as one dict: ``score:<key>`` and ``curve:<key>``."""
    flat = {f"score:{k}": v for k, v in out.scores.items()}
    flat.update({f"curve:{k}": v for k, v in out.curves.items()})
    return flat


def same_output(a: dict[str, Tensor], b: dict[str, Tensor], exact: bool = False) -> bool:
    """Two :func:`flatten_output` dicts with the same keys and shapes, values within
    ``rtol=1e-5, atol=1e-6`` (bit for bit when ``exact``), NaN equal to NaN."""
    if a.keys() != b.keys():
        return False
    rtol, atol = (0.0, 0.0) if exact else (1e-5, 1e-6)
    return all(
        a[k].shape == b[k].shape
        and torch.allclose(a[k].double(), b[k].double(), rtol=rtol, atol=atol, equal_nan=True)
        for k in a
    )
