"""Checkpoints in every accepted form: read, split into weights and record, load with one-line errors."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.torch_version import TorchVersion

from bench.core.errors import ConfigError, first_line
from bench.core.paths import existing_file, resolve_path

#: Keys under which a checkpoint dict may hold the state dict (or the pickled model).
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Within it every ``torch.load`` unpickles only tensors and plain values, also the library
    calls that ask for more: ``torch.hub.load_state_dict_from_url`` (how torchvision reads its
    cached weights) defaults to ``weights_only=False``, so a file dropped into a shared
    ``TORCH_HOME`` would otherwise run code (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, torch >= 2.4)."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {n: os.environ.get(n) for n in names}
    os.environ[names[0]] = "1"
    os.environ.pop(names[1], None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def read_checkpoint(
    path: str | Path, key: str = "model.checkpoint", hint: str = "", trust: bool = False
) -> object:
    """Load a checkpoint file onto the CPU, or a ConfigError naming ``key``.

    Only tensors and plain values are unpickled (``torch.load(weights_only=True)``) unless
    ``trust``: a pickled model can run any code of whoever made the file.
    """
    p = existing_file(path, key, hint)
    try:
        # torch.__version__ (a str subclass) is what training records store beside the weights
        with torch.serialization.safe_globals([TorchVersion]):
            return torch.load(p, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        if trust:
            raise ConfigError(
                f"{key}={path} could not be read as a torch checkpoint ({err})."
            ) from err
        trust_key = (
            key.rsplit(".", 1)[0] + ".trust_checkpoint" if "." in key else "trust_checkpoint"
        )
        raise ConfigError(
            f"{key}={path} holds more than tensors and plain values (a pickled model?), and "
            f"unpickling it would run code from the file; set {trust_key}=true if you trust where "
            "it came from, or save a state dict (model.state_dict()) instead."
        ) from err
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: one clear line
        raise ConfigError(
            f"{key}={path} could not be read as a torch checkpoint ({type(err).__name__}: "
            f"{first_line(err)})."
        ) from err


def _is_state(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def split_checkpoint(
    obj: object, path: str | Path, key: str = "model.checkpoint"
) -> tuple[nn.Module | dict, dict]:
    """``(model or state dict, record)`` of a loaded checkpoint.

    Accepted forms: a pickled ``nn.Module`` (full model); a bare state dict (name -> tensor); a
    dict holding the state dict or model under one of :data:`STATE_KEYS` beside other entries
    (its scalar entries, e.g. the training record, are returned as the record).
    """
    if isinstance(obj, nn.Module) or _is_state(obj):
        return obj, {}
    if isinstance(obj, dict):
        for name in STATE_KEYS:
            inner = obj.get(name)
            if isinstance(inner, nn.Module) or _is_state(inner):
                record = {
                    k: v
                    for k, v in obj.items()
                    if k != name and isinstance(v, (str, int, float, bool))
                }
                return inner, record
    raise ConfigError(
        f"{key}={path} holds a {type(obj).__name__} that is neither a model nor a state "
        f"dict; accepted: a pickled nn.Module, a state dict, or a dict with the state dict under "
        f"one of {', '.join(STATE_KEYS)}."
    )


def strip_prefix_of(state: dict, prefix: str | None) -> dict:
    """``state`` with ``prefix`` removed from every key that starts with it (e.g. ``module.``)."""
    if not prefix:
        return state
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _common_prefix(keys: list[str]) -> str | None:
    first = {k.split(".", 1)[0] for k in keys if "." in k}
    if len(first) == 1 and all("." in k for k in keys):
        return first.pop() + "."
    return None


def load_state(
    model: nn.Module, state: dict, checkpoint: str | Path, what: str, key: str = "model.checkpoint"
) -> None:
    """``model.load_state_dict(state)`` strictly, or a ConfigError that says what does not fit and how to fix it."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in state
        and hasattr(state[k], "shape")
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {'; '.join(shapes[:2])}")
    hints = []
    prefix = _common_prefix(list(state))
    if prefix and unexpected and not _common_prefix(list(own)) == prefix:
        hints.append(
            f"the checkpoint's keys start with '{prefix}': set model.strip_prefix={prefix}"
        )
    if shapes:
        hints.append(
            "a checkpoint fine-tuned for another number of classes needs model.num_classes=<its count>"
        )
    raise ConfigError(
        f"{key}={checkpoint} does not fit {what}: {'; '.join(parts)}."
        + (f" Hint: {'; '.join(hints)}." if hints else "")
    )


def load_weights(
    checkpoint: str | Path,
    build: Callable[[], nn.Module],
    what: str,
    strip_prefix: str | None = None,
    key: str = "model.checkpoint",
    hint: str = "",
    trust: bool = False,
) -> tuple[nn.Module, dict]:
    """The model a checkpoint file describes, and the checkpoint's record.

    A pickled model (read only with ``trust``) is returned as it is; a state dict (``strip_prefix`` removed) is loaded
    strictly into ``build()``, described as ``what`` in errors. The record holds the checkpoint's
    scalar entries and its resolved path (``checkpoint``).
    """
    obj, record = split_checkpoint(read_checkpoint(checkpoint, key, hint, trust), checkpoint, key)
    record["checkpoint"] = str(resolve_path(checkpoint))
    if isinstance(obj, nn.Module):
        return obj, record
    model = build()
    load_state(model, strip_prefix_of(obj, strip_prefix), checkpoint, what, key)
    return model, record
