"""The Hydra task: wire one (model, dataset, method, metrics) cell together and score it.

:func:`run` is three steps: :func:`build` instantiates everything from the config (every check that
can fail does so here, before any compute), :func:`score` runs the method and the metrics batch by
batch and appends the rows, :func:`finish` writes the curves and maps. The record is written in
every case, with the status and what was kept.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from bench import ROOT, __version__
from bench.config.validate import check_logger, construct_node, user_error, validate
from bench.core.batch import Batch, collate, collate_with
from bench.core.context import (
    OUT_OF_MEMORY,
    Context,
    memory_bytes,
    resolve_device,
)
from bench.core.errors import ConfigError
from bench.core.paths import CONF_DIR, IN_CHECKOUT
from bench.data.base import ImageDataset
from bench.data.subset import SUBSET_KEYS, select
from bench.engine.allocator import allocator_state, keep_freed_memory
from bench.engine.cache import (
    MapCache,
    attribute_cached,
    image_digests,
    job_spec,
    without_chunk_keys,
)
from bench.engine.io import (
    CURVES,
    MAP_FLAGS,
    MAPS,
    PARTS,
    PROGRESS,
    RECORD,
    SCORES,
    SUPERSEDED,
    Heartbeat,
    Progress,
    RowWriter,
    atomic_savez,
    atomic_write_json,
    claim_folder,
    file_digest,
    release_folder,
)
from bench.engine.timing import Timer
from bench.metrics.base import Metric, MetricOutput
from bench.models import ModelMeta, meta_of

log = logging.getLogger("bench")

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


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def build_dataset(cfg: DictConfig, seed: int) -> tuple[ImageDataset, Dataset, dict]:
    """Instantiate ``cfg.dataset`` without its subset keys, then select the job's items."""
    node = OmegaConf.to_container(cfg, resolve=True)
    subset = {k: node.pop(k) for k in SUBSET_KEYS if k in node}
    dataset = instantiate(node)
    return dataset, select(dataset, seed=seed, **subset), subset


def map_flags(maps: Tensor) -> list[str]:
    """Per image of ``maps`` ``[B, H, W]``: ``nonfinite_map`` (a NaN or Inf value),
    ``constant_map`` (one value everywhere: no ranking, no region, no structure) or ``""``."""
    flat = maps.detach().flatten(1)
    nonfinite = (~torch.isfinite(flat)).any(1)
    constant = flat.amax(1) == flat.amin(1)
    return [
        MAP_FLAGS[0] if n else MAP_FLAGS[1] if c else ""
        for n, c in zip(nonfinite.tolist(), constant.tolist())
    ]


def rows_of(
    out: MetricOutput,
    metric: str,
    batch: Batch,
    meta: dict[str, str],
    map_flag: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Long-format rows of one metric's output for a batch; ``map_flag`` (per image, from
    :func:`map_flags`) overrides the metric's own flag.

    Every tensor goes to the host once per batch (``tolist``), never once per row, so a CUDA run
    synchronises once here rather than ``B`` times.
    """
    targets = batch.targets.tolist()
    map_flag = map_flag or [""] * len(targets)
    rows = []
    for suffix, scores in out.scores.items():
        name = f"{metric}.{suffix}" if suffix else metric
        values = scores.detach().float().cpu().tolist()
        flags = out.flags.get(suffix)
        flags = flags.cpu().tolist() if flags is not None else [False] * len(values)
        omit = out.omit.get(suffix)
        omit = omit.cpu().tolist() if omit is not None else [False] * len(values)
        for i, value in enumerate(values):
            if omit[i]:
                continue
            flag = map_flag[i] or (
                out.flag_reason if flags[i] else ("nan" if math.isnan(value) else "")
            )
            rows.append(
                {
                    **meta,
                    "image_id": batch.ids[i],
                    "target": targets[i],
                    "metric": name,
                    "value": value,
                    "flag": flag,
                }
            )
    return rows


@dataclass
class Cell:
    """Everything one job scores with, built and checked before any compute."""

    model: nn.Module
    meta: ModelMeta
    base: ImageDataset
    dataset: Dataset
    method: Callable[[nn.Module, Tensor, Tensor], Tensor]
    method_name: str
    metrics: dict[str, Metric]
    ctx: Context
    row_meta: dict[str, str] = field(default_factory=dict)
    cache: MapCache = field(default_factory=lambda: MapCache(".", mode="off"))


def method_label(cfg: DictConfig) -> str:
    """The method's config name: Hydra's choice under the CLI; composed in-process (bench.api),
    the one ``conf/method`` file whose ``_target_`` is the method's, else the class name."""
    if HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("method"):
        return HydraConfig.get().runtime.choices["method"]
    target = str(cfg.method.get("_target_", "method"))
    names = [
        p.stem
        for p in sorted((CONF_DIR / "method").glob("*.yaml"))
        if not p.stem.startswith("_") and f"_target_: {target}\n" in p.read_text()
    ]
    cls = target.rsplit(".", 1)[-1]
    if len(names) > 1 and cls.lower() in names:  # several configs of one class: the plain one
        return cls.lower()
    return names[0] if len(names) == 1 else cls


def resolve_model_node(cfg: DictConfig, meta: ModelMeta) -> None:
    """Write what the model's loader found back into ``cfg.model``: ``cam_layer: auto`` becomes the
    layer it chose and ``num_classes: null`` the logits it counted, so every ``${model.*}``
    interpolation (the CAM methods' ``layer``, the datasets' class counts) sees the same values."""
    node = cfg.model
    if node.get("cam_layer") == "auto":
        node.cam_layer = meta.cam_layer
    if "num_classes" in node and node.num_classes is None:
        node.num_classes = meta.num_classes


def build(
    cfg: DictConfig,
    device: torch.device,
    timer: Timer,
    record: dict[str, Any],
    cell_hooks: list | None = None,
) -> Cell:
    """Instantiate the model, data, method and metrics of ``cfg`` and check that they fit together;
    fills ``record`` with what was built and ``cell_hooks`` with the hooks to remove when the job
    ends (the pass counter on the model)."""
    cell_hooks = [] if cell_hooks is None else cell_hooks
    with timer("load_model"):
        model = instantiate(cfg.model).to(device).eval()
        meta = meta_of(model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
    resolve_model_node(cfg, meta)
    record["config"] = OmegaConf.to_container(cfg, resolve=True)
    with timer("load_data"):
        base, dataset, subset = build_dataset(cfg.dataset, cfg.seed)
    record["model"] = meta.to_dict()
    record["dataset"] = {
        "name": base.name,
        "split": base.split,
        "size": len(base),
        "num_classes": base.num_classes,
        "classes": len(base.class_names),  # the dataset's own classes (per-class means)
        "selected": len(dataset),
        **subset,
        "skipped": list(getattr(dataset, "skipped", [])),  # unreadable files (on_bad_sample)
        "class_mapping": getattr(base, "class_indices", None),
        "resize": getattr(getattr(base, "preprocess", None), "resize", None),
    }
    if base.num_classes and base.num_classes != meta.num_classes:
        raise ConfigError(
            f"model={meta.name} has {meta.num_classes} classes but dataset={base.name} has "
            f"{base.num_classes}; set the dataset's class mapping or choose a matching model."
        )
    method_name = method_label(cfg)
    method = construct_node("method", cfg.method)
    method.check(model)
    metrics: dict[str, Metric] = {}
    for name, mcfg in (cfg.metric or {}).items():
        metric = construct_node(f"metric.{name}", mcfg)
        try:
            base.require(metric.requires, f"metric={name}")
        except ConfigError as err:
            if (
                "masks" in metric.requires
                and "boxes" in base.fields
                and "region" in metric.settings()
            ):
                raise ConfigError(
                    f"{err} Score it on the boxes instead (metric.{name}.region=boxes), or give "
                    "the dataset masks (dataset=folder: a mask column in the labels CSV)."
                ) from err
            raise
        try:
            metric.check_image(*meta.input_size)
        except ConfigError as err:
            raise ConfigError(f"metric.{name}.{err}") from err
        metrics[name] = metric
    record["method"] = {
        "name": method_name,
        "class": type(method).__name__,
        "settings": OmegaConf.to_container(cfg.method, resolve=True),
    }
    record["metrics"] = {}
    for name, metric in metrics.items():
        info = {"class": type(metric).__name__, **metric.meta(), "settings": metric.settings()}
        labels = metric.curve_labels(model)
        if labels is not None:  # the x axis of the metric's curves (e.g. the randomised layers)
            info["curve_x"] = list(labels)
        record["metrics"][name] = info
    ctx = Context(
        model=model,
        device=device,
        chunk_size=cfg.chunk_size,
        precision=cfg.precision,
        method=method,
        seed=cfg.seed,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        max_memory=memory_bytes(cfg.max_memory),
        counter=timer.passes,
    )
    cell_hooks.append(timer.passes.attach(model))  # every pass through the model, counted
    row_meta = {
        "model": meta.name,
        "weights": meta.weights,
        "dataset": base.name,
        "split": base.split,
        "method": method_name,
    }
    cache = MapCache(cfg.paths.cache_root, cfg.cache, cfg.cache_dtype)
    if cache.enabled:
        with timer("cache_key"):  # the weights' checksum: once per job
            cache.start(job_spec(cfg, model, record["model"], device))
    return Cell(model, meta, base, dataset, method, method_name, metrics, ctx, row_meta, cache)


#: Keys of the per-batch parts that hold the saved maps (the others are curves).
_MAPS_PART = "_maps"


def loader_context(num_workers: int) -> Any:
    """How the DataLoader's workers start when there are any (``num_workers > 0``; None otherwise):
    loky's context (joblib's), each worker a fresh interpreter that unpickles the dataset.

    The platform default (``fork`` on Linux) fails inside the joblib launcher's loky workers with
    ``AttributeError: 'Process' object has no attribute 'env'`` (hydra#964, joblib#1104), and
    there ``spawn`` and ``forkserver`` fail too (``cannot find context for 'loky'``: the worker
    inherits loky's start method). loky's context works under every launcher (basic, joblib,
    submitit, ray) and on every OS, at the cost of a spawn: a few seconds per job to start the
    workers. Datasets must therefore be picklable.
    """
    if num_workers <= 0:
        return None
    from joblib.externals.loky.backend.context import get_context

    return get_context("loky")


def score(cfg: DictConfig, cell: Cell, writer: RowWriter, timer: Timer, progress: Progress) -> None:
    """Attribute and score every batch of the cell not yet done (``progress``: a resumed job
    starts after its last complete batch); each batch's rows are appended (and flushed), its
    curves and maps written to a part, and ``progress`` advanced."""
    dataset = cell.dataset
    if progress.images:  # whole batches were done: the rest keeps the same batch boundaries
        dataset = Subset(dataset, range(progress.images, len(cell.dataset)))
    # host-side inputs the method asks for (SLIC superpixels), made in the loader's workers
    # where there are some (overlapping the device); without workers the method makes its own
    # (so that a batch whose maps all come from the cache costs nothing)
    prepare = None
    if cfg.num_workers > 0 and hasattr(cell.method, "loader_inputs"):
        prepare = cell.method.loader_inputs()
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate if prepare is None else partial(collate_with, prepare),
        multiprocessing_context=loader_context(cfg.num_workers),
    )
    total = progress.batches + len(loader)
    desc = f"{cell.method_name} on {cell.base.name}"
    # the bar is closed however the loop ends, so an interrupted job's last line is its error
    with tqdm(loader, desc=desc, unit="batch", initial=progress.batches, total=total) as bar:
        batches = iter(bar)
        while True:
            with timer("data"):  # waiting for the loader (overlapped with compute by workers)
                batch = next(batches, None)
            if batch is None:
                break
            with timer.batch(len(batch)):
                _score_batch(cfg, cell, writer, timer, progress, batch)


def _score_batch(
    cfg: DictConfig, cell: Cell, writer: RowWriter, timer: Timer, progress: Progress, batch: Batch
) -> None:
    """Attribute and score one batch; append its rows, write its part, advance ``progress``."""
    ctx, device = cell.ctx, cell.ctx.device
    digests = image_digests(batch.images) if cell.cache.enabled else []
    batch = batch.to(device)
    ctx.plan_chunk(batch.images)  # chunk_size=auto: chosen (and probed) at the first batch
    targets = batch.targets if cfg.explain == "label" else ctx.predictions(batch.images)
    given = cell.method.given if hasattr(cell.method, "given") else None
    with timer("attribute"), given(batch.images, batch.extras) if given else nullcontext():
        maps = attribute_cached(
            cell.cache, cell.method, cell.model, batch.ids, digests, batch.images, targets
        )
    arrays: dict[str, np.ndarray] = {}
    if cfg.save_maps:
        arrays[_MAPS_PART] = maps.half().cpu().numpy()
        arrays[f"{_MAPS_PART}.ids"] = np.array(batch.ids)
    flags = map_flags(maps)
    for f in flags:
        if f:
            progress.flagged_maps[f] = progress.flagged_maps.get(f, 0) + 1
    if MAP_FLAGS[0] in flags:  # the metrics score zeros instead; every such row is flagged
        bad = torch.tensor([f == MAP_FLAGS[0] for f in flags], device=maps.device)
        maps = torch.where(bad[:, None, None], torch.zeros_like(maps), maps)
    rows = []
    for name, metric in cell.metrics.items():
        with timer(f"metric.{name}"):
            result = metric(ctx, batch, maps)
        rows += rows_of(result, name, batch, cell.row_meta, flags)
        for suffix, curve in result.curves.items():
            key = f"{name}.{suffix}" if suffix else name
            arrays[key] = curve.float().cpu().numpy()
            arrays[f"{key}.ids"] = np.array(batch.ids)
    writer.write(rows)
    progress.step(writer, len(batch), arrays)


def forward_record(ctx: Context, timer: Timer) -> dict[str, Any]:
    """The record's ``forward``: the metrics' forward images and seconds (``Context.forward``), the
    chunk size (and how ``chunk_size=auto`` chose it), the speed options, and every pass through
    the model (methods' included) counted by the timer's hooks."""
    return {
        "images": ctx.forward_images,
        "seconds": round(ctx.forward_seconds, 4),
        "chunk_size": ctx.chunk_size,
        "chunk_plan": ctx.chunk_plan,
        "precision": ctx.precision,
        "channels_last": ctx.channels_last,
        "compile": ctx.compile,
        "passes": {"forward": timer.passes.forward, "backward": timer.passes.backward},
    }


def finish(out_dir: Path, progress: Progress) -> None:
    """Write the job's curves and (when asked) maps, gathered from its parts, atomically."""
    parts = {k: np.concatenate(v) for k, v in progress.arrays().items()}
    maps = {k: parts.pop(k) for k in (_MAPS_PART, f"{_MAPS_PART}.ids") if k in parts}
    if parts:
        atomic_savez(out_dir / CURVES, parts)
    if maps:
        atomic_savez(out_dir / MAPS, {"maps": maps[_MAPS_PART], "ids": maps[f"{_MAPS_PART}.ids"]})


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


#: What a record keeps when only a small one can be written (the disk is full).
SMALL_RECORD = (
    "started",
    "host",
    "pid",
    "config_hash",
    "rows",
    "batches_complete",
    "partial_scores",
)


def _write_record(out_dir: Path, record: dict[str, Any]) -> OSError | None:
    """Write the record atomically; when that fails (a full disk: the atomic write needs room for
    a second copy), write a small ``failed`` record in place of the old one, whose blocks it
    frees first, so the folder never says ``running`` for a job that ended. Returns the error."""
    path = out_dir / RECORD
    try:
        atomic_write_json(path, record)
        return None
    except OSError as err:
        log.error("could not write %s: %s", path, err)
        small = {k: record[k] for k in SMALL_RECORD if k in record}
        earlier = record.get("error")
        small["status"] = "interrupted" if record.get("status") == "interrupted" else "failed"
        small["error"] = f"the record could not be written ({err.strerror or err})" + (
            f" after: {earlier}" if earlier else ""
        )
        try:
            with path.open("w") as f:  # truncates first: the old record's blocks are reused
                json.dump(small, f)
        except OSError as again:
            log.error("could not write a small record either: %s", again)
        return err


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


def _read_record(out_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((out_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _files_match(out_dir: Path, record: dict[str, Any]) -> bool:
    files = record.get("files")
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


def prior_state(out_dir: Path, chash: str) -> tuple[str, dict[str, Any] | None, Progress | None]:
    """What the folder already holds for a job whose config hashes to ``chash``: ``complete``
    (its files intact: nothing to do), ``resume`` (an unfinished job of this config: go on from
    its last complete batch), ``stale`` (another config's, or damaged: set aside) or ``fresh``."""
    record = _read_record(out_dir)
    if record is not None and record.get("status") == "completed":
        if record.get("config_hash") == chash and _files_match(out_dir, record):
            return "complete", record, None
        return "stale", record, None
    progress = Progress.load(out_dir, chash)
    if progress is not None:
        return "resume", record, progress
    if any((out_dir / n).exists() for n in JOB_FILES):
        return "stale", record, None
    return "fresh", record, None


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Score one cell; write ``scores.csv``, ``curves.npz`` and ``record.json`` into ``out_dir``.

    The record is written when the job starts (status ``running``) and again when it ends
    (``completed``, ``failed`` or ``interrupted``, with the rows kept and the size and SHA-256 of
    every output file), so a killed job is still visible to collation. The folder is claimed first
    (a folder another live job is writing is refused). A re-launch into the folder of a job with
    the same config (:func:`config_hash`) does nothing when that job completed, and continues it
    from its last complete batch when it did not; another config's files are set aside.
    """
    started = time.time()
    validate(cfg, construct=False)  # build() constructs the method and metrics, in order
    check_logger(**logger_options(cfg))  # a missing package or a bad option: before any compute
    out_dir = Path(out_dir)
    claim_folder(out_dir)
    chash = config_hash(cfg)
    try:
        state, old, progress = prior_state(out_dir, chash)
        if state == "complete":
            release_folder(out_dir)
            log.info(
                "%s already holds this job, completed (%d rows): nothing to do",
                out_dir,
                old["rows"],
            )
            return old
        if state == "stale":
            why = (
                "it held a job with another config"
                if old is None or old.get("config_hash") != chash
                else "its files no longer match its record"
            )
            set_aside(out_dir, why)
    except BaseException:
        release_folder(out_dir)
        raise
    progress = progress or Progress(out_dir, chash)
    record: dict[str, Any] = {
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "config_hash": chash,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "choices": dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {},
        "versions": versions(),
    }
    if progress.batches:
        record["resumed"] = {
            "batches_kept": progress.batches,
            "images_kept": progress.images,
            "rows_kept": progress.rows,
            "first_started": (old or {}).get("started"),
        }
        log.info(
            "%s: resuming after %d complete batch(es), %d rows kept",
            out_dir,
            progress.batches,
            progress.rows,
        )
    writer: RowWriter | None = None
    timer: Timer | None = None
    cell: Cell | None = None
    hooks: list = []
    oom_before = len(OUT_OF_MEMORY)
    try:
        with terminated_as_interrupt(), Heartbeat(out_dir):
            device = resolve_device(cfg.device)
            torch.manual_seed(cfg.seed)
            timer = Timer(device, warmup_batches=cfg.warmup_batches)
            record["device"] = device_info(device)
            record["device"]["allocator"] = (
                keep_freed_memory() if cfg.keep_freed_memory else allocator_state()
            )
            atomic_write_json(out_dir / RECORD, record)
            cell = build(cfg, device, timer, record, hooks)
            resume = (progress.bytes, progress.rows) if progress.batches else None
            writer = RowWriter(out_dir / SCORES, resume=resume)
            score(cfg, cell, writer, timer, progress)
            finish(out_dir, progress)  # curves and maps first: scores.csv exists only when all do
            writer.close(complete=True)
        record["status"] = "completed"
        record["rows"] = writer.count
        record["flagged_maps"] = progress.flagged_maps
        record["forward"] = forward_record(cell.ctx, timer)
        if len(OUT_OF_MEMORY) > oom_before:  # chunks halved (metrics' forwards or a method's)
            record["forward"]["out_of_memory"] = OUT_OF_MEMORY[oom_before:]
        record["files"] = {
            p.name: file_digest(p)
            for p in (out_dir / n for n in (SCORES, CURVES, MAPS))
            if p.is_file()
        }
        return record
    except BaseException as err:
        record["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        user = user_error(err)
        record["error"] = str(user) if user is not None else f"{type(err).__name__}: {err}"
        if writer is not None:
            kept = writer.close(complete=False)
            record["rows"] = writer.count
            record["partial_scores"] = kept.name
        record["batches_complete"] = progress.batches
        raise
    finally:
        if cell is not None and cell.cache.enabled:
            record["cache"] = {
                "mode": cell.cache.mode,
                "root": str(cell.cache.root),
                "dtype": cell.cache.dtype.__name__,
                **cell.cache.stats.as_dict(),
            }
        for hook in hooks:
            hook.remove()
        record["timings"] = timer.as_dict() if timer is not None else {}
        if timer is not None and timer.batches:
            record["throughput"] = timer.throughput()
        record["wall_seconds"] = round(time.time() - started, 3)
        written = _write_record(out_dir, record)
        if record["status"] == "completed" and written is None:
            progress.clear()  # the final files hold everything the parts held
        release_folder(out_dir)
        if written is not None and record["status"] == "completed":
            raise written  # the job's results cannot be trusted without their record
