"""One job: claim its folder, resume or set aside what it holds, build the cell
(:mod:`bench.engine.build`), score it batch by batch (:mod:`bench.engine.score`), write the curves
and maps; the record is written when the job starts and in every case when it ends, with the
status and what was kept."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from bench.config.validate import check_logger, fill_model_preprocessing, user_error, validate
from bench.core.context import OUT_OF_MEMORY, resolve_device
from bench.core.errors import Unfit
from bench.engine.allocator import allocator_state, keep_freed_memory
from bench.engine.build import Cell, build
from bench.engine.cache import without_chunk_keys
from bench.engine.io import (
    CURVES,
    MAPS,
    PARTS,
    PROGRESS,
    RECORD,
    SCORES,
    SUPERSEDED,
    Heartbeat,
    Progress,
    RowWriter,
    claim_folder,
    file_digest,
    release_folder,
)
from bench.engine.provenance import device_info, versions
from bench.engine.record import (
    CollateError,
    Record,
    Resumed,
    read_record,
    write_record,
)
from bench.engine.score import finish, forward_record, score
from bench.engine.timing import Timer

log = logging.getLogger("bench")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, ``kill``): handled like Ctrl-C, so the job's partial rows
    are flushed and its record says ``interrupted``."""


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the duration (main thread only; elsewhere, e.g. in
    a launcher's worker thread, signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: Top-level keys that change how a job runs, never what it computes: left out of its config hash,
#: so a re-launch with more workers or another cache mode still resumes it.
RUN_ONLY_KEYS = (
    "num_workers",
    "keep_freed_memory",
    "tag",
    "trust_code",
    "cache",
    "paths",
    "logger",
    "chunk_size",
    "max_memory",
    "warmup_batches",
    "unfit",
)
#: Output files a job writes; a re-launch with another config sets them aside first.
JOB_FILES = (RECORD, SCORES, f"{SCORES}.partial", CURVES, MAPS, PROGRESS, PARTS)


def logger_options(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.logger`` (conf/logger/) as keyword arguments of :func:`bench.results.loggers.log_job`."""
    options = OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else {}
    return {"kind": "none", **options}


def config_hash(cfg: DictConfig) -> str:
    """A 16-hex-digit hash of the resolved config without ``RUN_ONLY_KEYS`` and the method's batch
    knobs (:data:`bench.engine.cache.CHUNK_KEYS`: they set speed and memory, never a score): what decides
    whether a folder's earlier results are this job's."""
    node = OmegaConf.to_container(cfg, resolve=True)
    node = {k: v for k, v in node.items() if k not in RUN_ONLY_KEYS}
    if "method" in node:
        node["method"] = without_chunk_keys(node["method"])
    return hashlib.sha256(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_record(out_dir: Path) -> Record | None:
    try:
        return read_record(out_dir)
    except CollateError:
        return None


def _files_match(out_dir: Path, record: Record) -> bool:
    files = record.files
    if not isinstance(files, dict) or SCORES not in files:
        return False
    try:
        return all(file_digest(out_dir / name) == want for name, want in files.items())
    except OSError:
        return False


def set_aside(out_dir: Path, why: str) -> Path | None:
    """Move the folder's earlier job files into ``.superseded/<stamp>/`` (collation skips it)."""
    present = [n for n in JOB_FILES if (out_dir / n).exists()]
    if not present:
        return None
    dest = out_dir / SUPERSEDED / time.strftime("%Y-%m-%d_%H-%M-%S")
    while dest.exists():
        dest = dest.with_name(dest.name + "_")
    dest.mkdir(parents=True)
    for name in present:
        os.replace(out_dir / name, dest / name)
    log.warning("%s: %s; its earlier files are kept in %s", out_dir, why, dest)
    return dest


def prior_state(out_dir: Path, chash: str) -> tuple[str, Record | None, Progress | None]:
    """What the folder already holds for a job whose config hashes to ``chash``: ``complete``
    (its files intact: nothing to do), ``resume`` (an unfinished job of this config: go on from
    its last complete batch), ``stale`` (another config's, or damaged: set aside) or ``fresh``
    (nothing, or only the record of a job skipped as not applicable: checked again)."""
    record = _read_record(out_dir)
    others = [n for n in JOB_FILES if n != RECORD and (out_dir / n).exists()]
    if record is not None and record.status == "skipped" and not others:
        return "fresh", record, None
    if record is not None and record.status == "completed":
        if record.config_hash == chash and _files_match(out_dir, record):
            return "complete", record, None
        return "stale", record, None
    progress = Progress.load(out_dir, chash)
    if progress is not None:
        return "resume", record, progress
    if any((out_dir / n).exists() for n in JOB_FILES):
        return "stale", record, None
    return "fresh", record, None


def _take_folder(out_dir: Path, chash: str) -> tuple[str, Record | None, Progress]:
    """Claim ``out_dir`` and settle what it holds (:func:`prior_state`): its state, its record (a
    resumed job's earlier one; the completed one when it holds this job complete) and the progress
    to go on from; another config's files are set aside. The folder is released again when it
    holds this job complete or on an error."""
    claim_folder(out_dir)
    try:
        state, old, progress = prior_state(out_dir, chash)
        if state == "complete":
            release_folder(out_dir)
            log.info(
                "%s already holds this job, completed (%d rows): nothing to do", out_dir, old.rows
            )
            return state, old, Progress(out_dir, chash)
        if state == "stale":
            why = (
                "it held a job with another config"
                if old is None or old.config_hash != chash
                else "its files no longer match its record"
            )
            set_aside(out_dir, why)
    except BaseException:
        release_folder(out_dir)
        raise
    progress = progress or Progress(out_dir, chash)
    if progress.batches:
        log.info(
            "%s: resuming after %d complete batch(es), %d rows kept",
            out_dir,
            progress.batches,
            progress.rows,
        )
    return state, (old if state == "resume" else None), progress


def _new_record(cfg: DictConfig, chash: str, progress: Progress, old: Record | None) -> Record:
    """The record of a job starting (status ``running``), with what it kept of an earlier run."""
    record = Record(
        status="running",
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        host=socket.gethostname(),
        pid=os.getpid(),
        config_hash=chash,
        config=OmegaConf.to_container(cfg, resolve=True),
        choices=dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {},
        versions=versions(),
    )
    if progress.batches:
        record.resumed = Resumed(
            batches_kept=progress.batches,
            images_kept=progress.images,
            rows_kept=progress.rows,
            first_started=old.started if old is not None else None,
        )
    return record


@dataclass
class _Job:
    """What a running job holds, for the record written when it ends."""

    out_dir: Path
    record: Record
    progress: Progress
    started: float
    writer: RowWriter | None = None
    timer: Timer | None = None
    cell: Cell | None = None
    hooks: list = field(default_factory=list)
    oom_before: int = 0


def _score(cfg: DictConfig, job: _Job) -> None:
    """Build the cell, score every batch not done yet, write the final files."""
    record, progress = job.record, job.progress
    with terminated_as_interrupt(), Heartbeat(job.out_dir):
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        job.timer = Timer(device, warmup_batches=cfg.warmup_batches)
        record.device = device_info(device)
        record.device["allocator"] = (
            keep_freed_memory() if cfg.keep_freed_memory else allocator_state()
        )
        write_record(job.out_dir, record)
        job.cell = build(cfg, device, job.timer, record, job.hooks)
        resume = (progress.bytes, progress.rows) if progress.batches else None
        job.writer = RowWriter(job.out_dir / SCORES, resume=resume)
        score(cfg, job.cell, job.writer, job.timer, progress)
        finish(job.out_dir, progress)  # curves and maps first: scores.csv exists only when all do
        job.writer.close(complete=True)


def _completed(job: _Job) -> None:
    record, out_dir = job.record, job.out_dir
    record.status = "completed"
    record.rows = job.writer.count
    record.flagged_maps = job.progress.flagged_maps
    record.forward = forward_record(job.cell.ctx, job.timer)
    if len(OUT_OF_MEMORY) > job.oom_before:  # chunks halved (metrics' forwards or a method's)
        record.forward["out_of_memory"] = OUT_OF_MEMORY[job.oom_before :]
    record.files = {
        p.name: file_digest(p) for p in (out_dir / n for n in (SCORES, CURVES, MAPS)) if p.is_file()
    }


def _stopped(cfg: DictConfig, job: _Job, err: BaseException) -> bool:
    """Record why the job stopped; True when it is skipped as not applicable (``unfit=skip``)."""
    record = job.record
    if isinstance(err, Unfit) and cfg.unfit == "skip" and job.writer is None:
        record.status, record.reason, record.need, record.rows = "skipped", str(err), err.need, 0
        log.warning("%s: not applicable, skipped (unfit=skip): %s", job.out_dir, err)
        return True
    record.status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
    user = user_error(err)
    record.error = str(user) if user is not None else f"{type(err).__name__}: {err}"
    if job.writer is not None:
        kept = job.writer.close(complete=False)
        record.rows = job.writer.count
        record.partial_scores = kept.name
    record.batches_complete = job.progress.batches
    return False


def _close(job: _Job) -> OSError | None:
    """Write the record of a job that ended (its cache, timings, wall time); remove the hooks, the
    progress of a completed job and the folder's lock. Returns the error writing the record."""
    record, cell, timer = job.record, job.cell, job.timer
    if cell is not None and cell.cache.enabled:
        record.cache = {
            "mode": cell.cache.mode,
            "root": str(cell.cache.root),
            "dtype": cell.cache.dtype.__name__,
            **cell.cache.stats.as_dict(),
        }
    for hook in job.hooks:
        hook.remove()
    record.timings = timer.as_dict() if timer is not None else {}
    if timer is not None and timer.batches:
        record.throughput = timer.throughput()
    record.wall_seconds = round(time.time() - job.started, 3)
    try:
        write_record(job.out_dir, record)
        written = None
    except OSError as err:
        written = err
    if record.status == "completed" and written is None:
        job.progress.clear()  # the final files hold everything the parts held
    release_folder(job.out_dir)
    return written


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Score one cell; write ``scores.csv``, ``curves.npz`` and ``record.json`` into ``out_dir``.
    Returns the record as written (:meth:`bench.engine.record.Record.to_dict`).

    The record is written when the job starts (status ``running``) and again when it ends
    (``completed``, ``failed`` or ``interrupted``, with the rows kept and the size and SHA-256 of
    every output file), so a killed job is still visible to collation. With ``unfit=skip``, a job
    whose method cannot apply to its model (:class:`~bench.core.errors.Unfit`) ends ``skipped``,
    with the ``reason`` and the unmet ``need`` in its record and no rows. The folder is claimed first
    (a folder another live job is writing is refused). A re-launch into the folder of a job with
    the same config (:func:`config_hash`) does nothing when that job completed, and continues it
    from its last complete batch when it did not; another config's files are set aside.
    """
    started = time.time()
    validate(cfg, construct=False)  # build() constructs the method and metrics, in order
    fill_model_preprocessing(cfg)  # a model's own input size and normalisation (timm, HF)
    check_logger(**logger_options(cfg))  # a missing package or a bad option: before any compute
    out_dir = Path(out_dir)
    chash = config_hash(cfg)
    state, old, progress = _take_folder(out_dir, chash)
    if state == "complete":
        return old.to_dict()
    record = _new_record(cfg, chash, progress, old)
    job = _Job(out_dir, record, progress, started, oom_before=len(OUT_OF_MEMORY))
    try:
        try:
            _score(cfg, job)
            _completed(job)
        except BaseException as err:
            if not _stopped(cfg, job, err):
                raise
    finally:
        written = _close(job)
        if written is not None and record.status == "completed":
            raise written  # the job's results cannot be trusted without their record
    return record.to_dict()
