"""Output files of a job: the long-format scores table, curves, the run record; all writes atomic."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Columns of the scores table: one row per (image, method, metric).
ROW_COLUMNS = [
    "model",
    "weights",
    "dataset",
    "split",
    "image_id",
    "target",
    "method",
    "metric",
    "value",
    "flag",
]
SCORES = "scores.csv"
CURVES = "curves.npz"
RECORD = "record.json"
MAPS = "maps.npz"


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's temporaries are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str, sort_keys=False) + "\n")


def atomic_savez(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RowWriter:
    """Appends rows to ``<file>.partial`` batch by batch (flushed, so an interrupted run keeps
    what it computed) and renames it to the final name when the job completes."""

    def __init__(self, path: str | Path, columns: Sequence[str] = ROW_COLUMNS) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.columns = list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "w", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self._writer.writeheader()
        self.count = 0

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._writer.writerow(row)
            self.count += 1
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self, complete: bool) -> Path:
        """Close the file; rename it to the final name when ``complete``. Returns the file kept."""
        self._file.close()
        if complete:
            os.replace(self.partial, self.path)
            return self.path
        return self.partial
