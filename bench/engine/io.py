"""Output files of a job: the long-format scores table, curves, the run record; all writes atomic."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
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
    what it computed) and renames it to the final name when the job completes.

    ``resume=(bytes, rows)`` continues a partial file an interrupted job left: it is cut back to
    its first ``bytes`` (the end of the last batch recorded complete, ``Progress``), which hold
    ``rows`` rows, and appended to."""

    def __init__(
        self,
        path: str | Path,
        columns: Sequence[str] = ROW_COLUMNS,
        resume: tuple[int, int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.columns = list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume is not None:
            self._file = open(self.partial, "r+", newline="")  # noqa: SIM115 - closed in close()
            self._file.truncate(resume[0])
            self._file.seek(resume[0])
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
            self.count = resume[1]
            return
        self._file = open(self.partial, "w", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self._writer.writeheader()
        self._file.flush()
        self.count = 0

    def tell(self) -> int:
        """Bytes written so far (every row flushed)."""
        return self._file.tell()

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


#: Beside a running job's partial rows: what is complete so far (``Progress``), and the curves and
#: maps of each complete batch.
PROGRESS = "progress.json"
PARTS = "parts"
#: Where a re-launch with another config moves a folder's earlier files (collation skips it).
SUPERSEDED = ".superseded"


class Progress:
    """What a job has completed, batch by batch, so a re-launch continues where it stopped.

    After every batch the job appends its rows (flushed), writes the batch's curves and maps to
    ``parts/batch_<k>.npz``, and only then rewrites ``progress.json`` (atomically) with the batch
    count, the images done, the rows and the byte length of the partial rows file. A job killed
    anywhere in between is resumed from the last batch ``progress.json`` names: later rows are cut
    off and that batch computed again, so no row is missing or doubled.
    """

    def __init__(self, out_dir: Path, config_hash: str) -> None:
        self.out_dir = Path(out_dir)
        self.config_hash = config_hash
        self.batches = 0
        self.images = 0
        self.rows = 0
        self.bytes = 0
        self.flagged_maps: dict[str, int] = {}

    @classmethod
    def load(cls, out_dir: Path, config_hash: str) -> Progress | None:
        """The progress of an unfinished job with this config in ``out_dir``, or None (no such
        job, another config, or files that do not add up)."""
        out_dir = Path(out_dir)
        try:
            data = json.loads((out_dir / PROGRESS).read_text())
            partial = (out_dir / f"{SCORES}.partial").stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("config_hash") != config_hash:
            return None
        p = cls(out_dir, config_hash)
        try:
            p.batches, p.images = int(data["batches"]), int(data["images"])
            p.rows, p.bytes = int(data["rows"]), int(data["bytes"])
            p.flagged_maps = {str(k): int(v) for k, v in dict(data["flagged_maps"]).items()}
        except (KeyError, TypeError, ValueError):
            return None
        parts = [p.part(k) for k in range(p.batches)]
        if p.bytes > partial or not all(x.is_file() for x in parts):
            return None
        return p

    def part(self, k: int) -> Path:
        return self.out_dir / PARTS / f"batch_{k:06d}.npz"

    def step(self, writer: RowWriter, images: int, arrays: dict[str, np.ndarray]) -> None:
        """Record one more complete batch (its rows already written by ``writer``)."""
        atomic_savez(self.part(self.batches), arrays)
        self.batches += 1
        self.images += images
        self.rows, self.bytes = writer.count, writer.tell()
        atomic_write_json(
            self.out_dir / PROGRESS,
            {
                "config_hash": self.config_hash,
                "batches": self.batches,
                "images": self.images,
                "rows": self.rows,
                "bytes": self.bytes,
                "flagged_maps": self.flagged_maps,
            },
        )

    def arrays(self) -> dict[str, list[np.ndarray]]:
        """Every batch's arrays, key by key, in batch order."""
        out: dict[str, list[np.ndarray]] = {}
        for k in range(self.batches):
            with np.load(self.part(k), allow_pickle=False) as f:
                for name in f.files:
                    out.setdefault(name, []).append(f[name])
        return out

    def clear(self) -> None:
        """Remove the progress file and the parts (the job's final files hold everything)."""
        for k in range(self.batches):
            self.part(k).unlink(missing_ok=True)
        try:
            (self.out_dir / PARTS).rmdir()
        except OSError:
            pass
        (self.out_dir / PROGRESS).unlink(missing_ok=True)


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


#: The marker a running job keeps in its folder: ``<pid> <host>``, touched every
#: ``HEARTBEAT_SECONDS`` while the job runs.
LOCK = ".job.lock"
HEARTBEAT_SECONDS = 30.0
#: A lock from another host untouched this long belongs to a job that is gone (a lost node).
STALE_SECONDS = 600.0


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

    A folder is taken while another live job holds its lock. A lock left by a process that no
    longer exists on this host (``kill -9``), or by a job on another host that has not touched it
    for ``STALE_SECONDS`` (a lost node; a live job touches it every ``HEARTBEAT_SECONDS``), is
    taken over. What a re-launch then does with the folder's earlier results (keep, continue or
    set aside) is :func:`bench.engine.run.run`'s decision.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner, age = lock.read_text().split(), time.time() - lock.stat().st_mtime
            except OSError:
                continue  # released meanwhile
            pid = int(owner[0]) if owner and owner[0].isdigit() else -1
            host = owner[1] if len(owner) > 1 else ""
            if pid == os.getpid() and host == socket.gethostname():
                break  # ours already (run() called again in this process after a failure)
            here = host == socket.gethostname()
            if (here and not pid_alive(pid)) or (not here and age > STALE_SECONDS):
                lock.unlink(missing_ok=True)  # a killed job's, or a lost node's: take it over
                continue
            raise ConfigError(
                f"{out_dir} is in use by job pid {pid} on {host or 'an unknown host'}; give this "
                f"run its own folder (hydra.run.dir=...) or, if that job is gone, delete {lock}."
            ) from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            break


class Heartbeat:
    """Touch ``out_dir``'s lock every ``HEARTBEAT_SECONDS`` from a daemon thread while a job runs,
    so that a job on another host can tell a live job from a lost one."""

    def __init__(self, out_dir: Path, every: float = HEARTBEAT_SECONDS) -> None:
        self.lock = Path(out_dir) / LOCK
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="bench-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                os.utime(self.lock)
            except OSError:
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def release_folder(out_dir: Path) -> None:
    """Remove this process's lock from ``out_dir`` (another process's is left alone)."""
    lock = out_dir / LOCK
    try:
        owner = lock.read_text().split()
    except OSError:
        return
    if owner and owner[0] == str(os.getpid()):
        lock.unlink(missing_ok=True)
