"""Where things are: the project root, the shipped resources, and user paths checked with
one-line errors."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import ConfigError

#: The project root: the checkout holding conf/, results/ and the committed reference files (an
#: editable install runs from it). Installed from a wheel, it is the folder above the package.
ROOT = Path(__file__).resolve().parents[2]
#: Where a wheel carries the resources (``conf/``, ``results/reference/models/*.pt``): setup.py
#: copies them into ``bench/_data`` at build time; a checkout has no such folder.
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "_data"
#: Running from a checkout (or an editable install of one), not from an installed wheel.
IN_CHECKOUT = (ROOT / "conf" / "config.yaml").is_file() and (ROOT / "pyproject.toml").is_file()
#: The folder the shipped resources are read from: the checkout, else the package data.
RESOURCES = ROOT if IN_CHECKOUT else PACKAGE_DATA
#: The Hydra config tree (``config.yaml`` and the groups).
CONF_DIR = RESOURCES / "conf"

_UNSET = (None, "", "???")


def candidates(path: str | Path) -> list[Path]:
    """Where ``path`` is looked for: as given if absolute (``~`` expanded); a relative path first
    among the shipped resources (:data:`RESOURCES`: the checkout, or the installed package data),
    then relative to the current working directory (a user's own data and outputs)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    here = Path.cwd() / p
    shipped = RESOURCES / p
    return [shipped] if shipped == here else [shipped, here]


def _find(path: str | Path, exists=Path.exists) -> tuple[Path, list[Path]]:
    looked = candidates(path)
    return next((c for c in looked if exists(c)), looked[-1]), looked


def resolve_path(path: str | Path) -> Path:
    """``path`` as given if absolute (``~`` expanded); a relative one is the shipped copy
    (checkout or package data) when there is one, else relative to the working directory."""
    return _find(path)[0]


def _existing(path: str | Path | None, key: str, folder: bool, hint: str = "") -> Path:
    kind = "folder" if folder else "file"
    if path in _UNSET:
        raise ConfigError(f"{key} is not set; point it at the {kind} ({key}=/path/to/it).")
    p, looked = _find(path, Path.is_dir if folder else Path.is_file)
    if not (p.is_dir() if folder else p.is_file()):
        what = "is not a folder" if folder else "not found"
        at = " and ".join(str(c) for c in looked)
        raise ConfigError(f"{key}={path} {what} (looked at {at}).{(' ' + hint) if hint else ''}")
    return p


def existing_dir(path: str | Path | None, key: str) -> Path:
    """``path`` (see :func:`resolve_path`) as an existing folder, or a ConfigError naming ``key``."""
    return _existing(path, key, folder=True)


def existing_file(path: str | Path | None, key: str, hint: str = "") -> Path:
    """``path`` (see :func:`resolve_path`) as an existing file, or a ConfigError naming ``key``."""
    return _existing(path, key, folder=False, hint=hint)


def read_lines(path: str | Path, key: str) -> list[str]:
    """Non-empty stripped lines of a text file, or a ConfigError naming ``key``."""
    return [ln.strip() for ln in existing_file(path, key).read_text().splitlines() if ln.strip()]
