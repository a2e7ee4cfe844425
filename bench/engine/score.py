"""Scoring: the one per-batch loop of every path that scores maps (a job, ``bench.api.evaluate``):
attribute (or take given maps), flag non-finite and constant maps, score with every metric into
long rows and curves; and a job's loop over its DataLoader around it."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from bench.core.batch import Batch, collate, collate_with
from bench.core.context import Context
from bench.engine.build import Cell
from bench.engine.cache import attribute_cached, image_digests
from bench.engine.io import CURVES, MAP_FLAGS, MAPS, Progress, RowWriter, atomic_savez
from bench.engine.timing import Timer
from bench.metrics.base import Metric, MetricOutput


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
class Scored:
    """What :func:`score_batch` made of one batch: the long rows, the curves (``<metric>[.suffix]``
    and ``<key>.ids`` arrays), the maps as the method made them and each map's flag."""

    rows: list[dict[str, Any]]
    curves: dict[str, np.ndarray]
    maps: Tensor
    flags: list[str]


def score_batch(
    ctx: Context,
    batch: Batch,
    metrics: dict[str, Metric],
    row_meta: dict[str, str],
    attribute: Callable[[Tensor], Tensor],
    *,
    explain: str = "label",
    timer: Timer | None = None,
    before_metric: Callable[[str], None] | None = None,
) -> Scored:
    """Attribute and score one ``batch`` (already on ``ctx.device``): the explained classes (the
    labels, or the predictions with ``explain="prediction"``), ``attribute(targets)`` ->
    maps ``[B, H, W]``, their flags (:func:`map_flags`; a non-finite map is scored as zeros and
    its rows flagged), then every metric in order (``before_metric(name)`` first, if given)."""

    def timed(what: str) -> AbstractContextManager:
        return timer(what) if timer is not None else nullcontext()

    ctx.plan_chunk(batch.images)  # chunk_size=auto: chosen (and probed) at the first batch
    targets = batch.targets if explain == "label" else ctx.predictions(batch.images)
    with timed("attribute"):
        maps = attribute(targets)
    flags = map_flags(maps)
    scored_maps = maps
    if MAP_FLAGS[0] in flags:  # the metrics score zeros instead; every such row is flagged
        bad = torch.tensor([f == MAP_FLAGS[0] for f in flags], device=maps.device)
        scored_maps = torch.where(bad[:, None, None], torch.zeros_like(maps), maps)
    rows: list[dict[str, Any]] = []
    curves: dict[str, np.ndarray] = {}
    for name, metric in metrics.items():
        if before_metric is not None:
            before_metric(name)
        with timed(f"metric.{name}"):
            result = metric(ctx, batch, scored_maps)
        rows += rows_of(result, name, batch, row_meta, flags)
        for suffix, curve in result.curves.items():
            key = f"{name}.{suffix}" if suffix else name
            curves[key] = curve.float().cpu().numpy()
            curves[f"{key}.ids"] = np.array(batch.ids)
    return Scored(rows, curves, maps, flags)


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
    """Attribute (through the cache) and score one batch (:func:`score_batch`); append its rows,
    write its part (curves, and the maps when asked), advance ``progress``."""
    digests = image_digests(batch.images) if cell.cache.enabled else []
    batch = batch.to(cell.ctx.device)
    given = cell.method.given if hasattr(cell.method, "given") else None

    def attribute(targets: Tensor) -> Tensor:
        with given(batch.images, batch.extras) if given else nullcontext():
            return attribute_cached(
                cell.cache, cell.method, cell.model, batch.ids, digests, batch.images, targets
            )

    scored = score_batch(
        cell.ctx, batch, cell.metrics, cell.row_meta, attribute, explain=cfg.explain, timer=timer
    )
    arrays: dict[str, np.ndarray] = {}
    if cfg.save_maps:
        arrays[_MAPS_PART] = scored.maps.half().cpu().numpy()
        arrays[f"{_MAPS_PART}.ids"] = np.array(batch.ids)
    arrays.update(scored.curves)
    for f in scored.flags:
        if f:
            progress.flagged_maps[f] = progress.flagged_maps.get(f, 0) + 1
    writer.write(scored.rows)
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
