"""Where things are: the project root, and user paths checked with one-line errors."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import ConfigError

#: The project root (the folder holding conf/, results/ and the committed reference files).
ROOT = Path(__file__).resolve().parents[2]

_UNSET = (None, "", "???")


def resolve_path(path: str | Path) -> Path:
    """``path`` as given if absolute (``~`` expanded), else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def _existing(path: str | Path | None, key: str, folder: bool, hint: str = "") -> Path:
    kind = "folder" if folder else "file"
    if path in _UNSET:
        raise ConfigError(f"{key} is not set; point it at the {kind} ({key}=/path/to/it).")
    p = resolve_path(path)
    if not (p.is_dir() if folder else p.is_file()):
        what = "is not a folder" if folder else "not found"
        raise ConfigError(f"{key}={path} {what} (looked at {p}).{(' ' + hint) if hint else ''}")
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
