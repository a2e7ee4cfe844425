"""What the report says about the machine: device, versions, commit, load."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import torch

from bench import ROOT
from bench.core.profiling import cpu_model


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores visible)"


def default_out(device: torch.device) -> Path:
    """``results/perf/cpu.md``, or ``results/perf/<gpu name>.md`` (e.g. ``nvidia-h200.md``)."""
    if device.type != "cuda":
        stem = device.type
    else:
        stem = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")
    return ROOT / "results" / "perf" / f"{stem}.md"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def git_rev() -> str:
    """The short commit, with ``+ uncommitted changes`` when the working tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (
        " + uncommitted changes" if dirty else ""
    )


def load() -> str:
    """The load average (1/5/15 min), ``a/b/c``."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())
