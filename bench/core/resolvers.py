"""OmegaConf resolvers of this project's configs, registered on import of ``bench``."""

from __future__ import annotations

import secrets

from omegaconf import OmegaConf


def _uid() -> str:
    """A random 6-hex-digit suffix, the same for the whole process (the resolver caches it)."""
    return secrets.token_hex(3)


def register_resolvers() -> None:
    """``${bench_uid:}`` (the run and sweep folders' suffix). Called on import of ``bench``, so a
    launcher's worker process, which unpickles a job config that may still hold the interpolation,
    resolves it too."""
    if not OmegaConf.has_resolver("bench_uid"):
        OmegaConf.register_new_resolver("bench_uid", _uid, use_cache=True)
