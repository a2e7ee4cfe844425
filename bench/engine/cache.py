"""The attribution cache: a map is computed once per (model, image, method, class, seed) and reused
by every metric, job and later run that needs it.

A map's key is the SHA-256 of everything it depends on (:func:`job_spec` for the job-wide part:
the model's name, every model argument, a checksum of its weights and the identity of its code
(:func:`model_code`: library and version for a zoo model, the source of its classes and module for
a model of the user's own), the dataset and its preprocessing, the method's class and resolved
settings without its batch sizes, the seed, the device type, and the code that computes maps
(:func:`code_digest`); then per image its id, a checksum of the input tensor itself and the
explained class), so any change of an input misses. Each map is one compressed ``.npz`` file
``<root>/maps/<key[:2]>/<key>.npz`` holding the map, the SHA-256 of its bytes, its own key and the
input's checksum; files are written through a temporary file and a rename (safe when several jobs
on a shared filesystem write the same key: the content is the same). On read the file must hold
the key and the input checksum asked for and a map matching its checksum; a file that does not,
or that cannot be read at all (any error), is counted ``corrupt``, deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from bench.core.origin import code_identity
from bench.engine.io import atomic_savez

log = logging.getLogger("bench.engine.cache")

#: Bumped when the key or the file layout changes (every older entry then misses).
FORMAT = 2
MODES = ("readwrite", "read", "off")
DTYPES = {"float32": np.float32, "float16": np.float16}
#: Method keys that set how many inputs go through the model at once: they change the speed and
#: the memory, never the map (the methods' batching contract, tests/methods/test_catalogue.py).
CHUNK_KEYS = frozenset({"batch_size", "internal_batch_size"})


def without_chunk_keys(method: Any) -> Any:
    """A method's config (a plain container) without its :data:`CHUNK_KEYS`, nested methods
    (a noise tunnel's ``method:``) included: what a map, and a job's scores, depend on."""
    if isinstance(method, dict):
        return {k: without_chunk_keys(v) for k, v in method.items() if k not in CHUNK_KEYS}
    return method


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


#: Packages whose code computes maps (a new version misses).
MAP_PACKAGES = ("torch", "torchvision", "captum", "lime", "shap", "scikit-image", "numpy")


def code_digest() -> str:
    """SHA-256 of the code that computes maps: every ``.py`` file of ``methods/`` and
    ``bench/core/`` (seeding, layers) and the versions of ``MAP_PACKAGES``, so a changed method
    never reads a map its old code computed."""
    import importlib.metadata

    import bench.methods as methods

    h = hashlib.sha256()
    for folder in (Path(methods.__file__).parent, Path(__file__).parent / "core"):
        for f in sorted(folder.rglob("*.py")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    for name in MAP_PACKAGES:
        try:
            h.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(name.encode())
    return h.hexdigest()


#: Model keys that locate or permit the weights without defining them (the weights' checksum
#: covers what they load).
MODEL_LOCATORS = frozenset({"checkpoint", "trust_checkpoint", "download"})


def model_code(model: nn.Module, model_cfg: dict[str, Any]) -> list[str]:
    """What identifies the code of ``model``: :func:`bench.core.origin.code_identity` of the
    class of every submodule (a library's ``dist==version``, else the SHA-256 of the class's
    source file) and of the factory ``model.module`` names, if any."""
    parts = {code_identity(type(m)) for m in model.modules()}
    module = model_cfg.get("module")
    if isinstance(module, str) and module:
        mod_name, _, attr = module.replace(":", ".").rpartition(".")
        factory = getattr(sys.modules.get(mod_name), attr, None)
        parts.add(code_identity(factory) if factory is not None else f"{module}:not imported")
    return sorted(parts)


def job_spec(cfg: DictConfig, model: nn.Module, meta: dict[str, Any], device: torch.device) -> dict:
    """The job-wide part of every map key of a job."""
    method = OmegaConf.to_container(cfg.method, resolve=True)
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    keep = ("_target_", "name", "split", "input_size", "mean", "std", "resize", "resize_size")
    return {
        "format": FORMAT,
        "model": {
            "name": meta["name"],
            "weights": meta["weights"],
            "sha256": weights_digest(model),
            "config": {k: v for k, v in model_cfg.items() if k not in MODEL_LOCATORS},
            "code": model_code(model, model_cfg),
        },
        "dataset": {k: dataset.get(k) for k in keep if k in dataset},
        "method": without_chunk_keys(method),
        "seed": int(cfg.seed),
        "device": device.type,
        "code": code_digest(),
    }


def image_digests(images: Tensor) -> list[str]:
    """SHA-256 of each input tensor's bytes (``[B, ...]``, read on the host)."""
    host = images.detach().cpu().contiguous()
    return [hashlib.sha256(x.numpy().tobytes()).hexdigest() for x in host]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in vars(self).items() if k != "errors"}
        if self.errors:
            out["errors"] = self.errors[:5]
        return out


class MapCache:
    """Maps on disk under ``root``; ``mode`` ``readwrite`` (look up, store what was computed),
    ``read`` (look up only: a shared, read-only cache) or ``off``."""

    def __init__(self, root: str | Path, mode: str = "readwrite", dtype: str = "float32") -> None:
        self.root = Path(root).expanduser().resolve() / "maps"  # like output_root: from the CWD
        self.mode = mode
        self.dtype = DTYPES[dtype]
        self.stats = CacheStats()
        self.spec_hash = ""

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def start(self, spec: dict[str, Any]) -> None:
        """Set the job-wide part of the keys (see :func:`job_spec`)."""
        text = json.dumps({**spec, "dtype": self.dtype.__name__}, sort_keys=True, default=str)
        self.spec_hash = hashlib.sha256(text.encode()).hexdigest()

    def keys(self, ids: list[str], digests: list[str], targets: Tensor) -> list[str]:
        """One key per image of a batch (``digests`` from :func:`image_digests`)."""
        out = []
        for i, digest, t in zip(ids, digests, targets.tolist()):
            text = json.dumps([self.spec_hash, str(i), digest, int(t)])
            out.append(hashlib.sha256(text.encode()).hexdigest())
        return out

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str, image: str) -> np.ndarray | None:
        """The stored map (float32) of ``key`` for the input whose checksum is ``image``, or None:
        absent, or corrupt (then deleted, recomputed): unreadable for any reason, another key's
        or another input's file, or a map that does not match its checksum."""
        p = self.path(key)
        try:
            size = p.stat().st_size
        except OSError:
            return None
        try:
            with np.load(p, allow_pickle=False) as f:
                arr, digest = np.array(f["map"]), str(f["sha256"])
                stored_key, stored_image = str(f["key"]), str(f["image"])
        except Exception as err:  # noqa: BLE001 - any damage (zlib.error, a truncated zip, ...)
            return self._corrupt(p, f"{type(err).__name__}: {err}")
        if stored_key != key:
            return self._corrupt(p, f"it holds the map of key {stored_key[:16]}...")
        if stored_image != image:
            return self._corrupt(p, "it holds the map of another input (image checksum differs)")
        if hashlib.sha256(arr.tobytes()).hexdigest() != digest:
            return self._corrupt(p, "checksum mismatch")
        self.stats.bytes_read += size
        return arr.astype(np.float32)

    def _corrupt(self, p: Path, why: str) -> None:
        log.warning("attribution cache: %s is corrupt (%s); recomputing it", p, why)
        self.stats.corrupt += 1
        if self.mode == "readwrite":
            p.unlink(missing_ok=True)
        return None

    def put(self, key: str, value: np.ndarray, image: str) -> None:
        """Store one map (atomically) with its key and its input's checksum ``image``; an I/O
        error is logged and counted, never fatal."""
        arr = np.ascontiguousarray(value, dtype=self.dtype)
        p = self.path(key)
        members = {
            "map": arr,
            "sha256": np.array(hashlib.sha256(arr.tobytes()).hexdigest()),
            "key": np.array(key),
            "image": np.array(image),
        }
        try:
            atomic_savez(p, members)
            self.stats.bytes_written += p.stat().st_size
            self.stats.writes += 1
        except OSError as err:  # a full or read-only cache disk: the run goes on without it
            self.stats.errors.append(f"{p}: {err}")
            log.warning("attribution cache: could not write %s (%s)", p, err)

    def lookup(self, keys: list[str], images: list[str]) -> list[np.ndarray | None]:
        if not self.enabled:
            return [None] * len(keys)
        found = [self.get(k, d) for k, d in zip(keys, images)]
        hits = sum(f is not None for f in found)
        self.stats.hits += hits
        self.stats.misses += len(keys) - hits
        return found

    def store(self, keys: list[str], maps: Tensor, images: list[str]) -> None:
        if self.mode != "readwrite":
            return
        host = maps.detach().float().cpu().numpy()
        for k, m, d in zip(keys, host, images):
            self.put(k, m, d)


def attribute_cached(
    cache: MapCache,
    method: Any,
    model: nn.Module,
    ids: list[str],
    digests: list[str],
    images: Tensor,
    targets: Tensor,
) -> Tensor:
    """``method(model, images, targets)``, computed only for the images the cache does not hold
    (``digests``: :func:`image_digests` of the images, taken on the host before the transfer)."""
    if not cache.enabled:
        return method(model, images, targets)
    keys = cache.keys(ids, digests, targets)
    found = cache.lookup(keys, digests)
    miss = [i for i, f in enumerate(found) if f is None]
    computed = None
    if miss:
        index = torch.tensor(miss, device=images.device)
        computed = method(model, images[index], targets[index])
        if cache.dtype is np.float16:  # scored as stored, so a hit and a miss score the same
            computed = computed.half().float()
        cache.store([keys[i] for i in miss], computed, [digests[i] for i in miss])
        if len(miss) == len(keys):
            return computed
    shape = computed.shape[1:] if computed is not None else found[0].shape
    maps = torch.empty(len(keys), *shape, device=images.device, dtype=torch.float32)
    hit = [i for i, f in enumerate(found) if f is not None]
    maps[torch.tensor(hit, device=images.device)] = torch.from_numpy(
        np.stack([found[i] for i in hit])
    ).to(images.device)
    if computed is not None:
        maps[torch.tensor(miss, device=images.device)] = computed.float()
    return maps
