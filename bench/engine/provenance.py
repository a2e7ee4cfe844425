"""What a result was made with: package versions, the project's commit, the device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

import torch

from bench import ROOT, __version__
from bench.core.paths import IN_CHECKOUT
from bench.core.profiling import cpu_model

PACKAGES = (
    "torch",
    "torchvision",
    "captum",
    "hydra-core",
    "numpy",
    "pandas",
    "scikit-image",
    "lime",
    "shap",
)


def _git(*args: str) -> str:
    """``git <args>`` in the project's checkout (stdout stripped; "" when git is not there, or
    when this is an installed copy, whose folder may lie inside some other repository)."""
    if not IN_CHECKOUT:
        return ""
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, plus Python and the project's git commit."""
    out = {"attribution-bench": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    commit, dirty = (
        _git("rev-parse", "--short", "HEAD"),
        _git("status", "--porcelain", "--untracked-files=no"),
    )
    out["git"] = (commit + ("-dirty" if dirty else "")) if commit else "unknown"
    return out


def machine() -> dict[str, Any]:
    """This machine as a result's provenance names it: CPU model, cores, platform and the load
    average (1/5/15 min) now; what may move between two machines is in docs/stability.md."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": load,
    }


def device_info(device: torch.device) -> dict[str, Any]:
    here = machine()
    info: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "platform": here["platform"],
        "processor": platform.processor(),
        "cpu": here["cpu"],
        "load_average": here["load_average"],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
