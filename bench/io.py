"""Output files of a job: the long-format scores table, curves, the run record; all writes atomic."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import ConfigError

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
#: ``flag`` values of the rows of a map no metric can score meaningfully (a NaN or Inf value; one
#: value everywhere): the rows are kept, left out of every mean and counted in the table.
MAP_FLAGS = ("nonfinite_map", "constant_map")
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


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


#: The marker a running job keeps in its folder: ``<pid> <host>``.
LOCK = ".job.lock"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def claim_folder(out_dir: Path) -> None:
    """Make ``out_dir`` this process's job folder, or raise a ConfigError naming the job that has it.

    A folder is taken when another live process holds its lock (two runs launched in the same
    second share Hydra's time-stamped folder) or when it holds a completed job, whose files a new
    run would overwrite. A lock left by a process that no longer exists on this host (a job killed
    with ``kill -9``) is taken over.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = lock.read_text().split() if lock.is_file() else []
            pid = int(owner[0]) if owner and owner[0].isdigit() else -1
            host = owner[1] if len(owner) > 1 else ""
            if pid == os.getpid() and host == socket.gethostname():
                break  # ours already (run() called again in this process after a failure)
            if host == socket.gethostname() and not pid_alive(pid):
                lock.unlink(missing_ok=True)  # a killed job's: take the folder over
                continue
            raise ConfigError(
                f"{out_dir} is in use by job pid {pid} on {host or 'an unknown host'}; give this "
                f"run its own folder (hydra.run.dir=...) or, if that job is gone, delete {lock}."
            ) from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            break
    record = out_dir / RECORD
    if record.is_file():
        try:
            status = json.loads(record.read_text()).get("status")
        except (OSError, ValueError):
            status = None
        if status == "completed":
            release_folder(out_dir)
            raise ConfigError(
                f"{out_dir} already holds a completed job ({record}); give this run its own "
                "folder (hydra.run.dir=...) or delete that one."
            )


def release_folder(out_dir: Path) -> None:
    """Remove this process's lock from ``out_dir`` (another process's is left alone)."""
    lock = out_dir / LOCK
    try:
        owner = lock.read_text().split()
    except OSError:
        return
    if owner and owner[0] == str(os.getpid()):
        lock.unlink(missing_ok=True)
