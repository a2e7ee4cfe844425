"""Experiment loggers: a completed job's files sent to a tracking tool, switched on with one
override (``logger=tensorboard``; ``logger=none``, the default, logs nothing).

The logger reads what the job wrote (``record.json``, ``scores.csv``, ``curves.npz``,
``maps.npz``) after it completed, so it costs nothing while the job runs and can be run again
on any completed job folder (``python -m bench.results.loggers tensorboard <job folder>...``).

TensorBoard (``pip install 'attribution-bench[tensorboard]'``) gets one log folder per job,
``<job>/tensorboard/``, so ``tensorboard --logdir <sweep folder>`` shows every job of a sweep as
one run:

- scalars ``metric/<metric>``: each metric's mean over images (maps flagged ``nonfinite_map`` or
  ``constant_map`` and NaN scores left out, as in the summary table), ``time/...``: seconds per
  image (the whole job, the attribution, each metric) and the job's wall seconds;
- scalars ``curve/<curve>``: the mean curve over images, one step per point of the curve;
- images ``figures/curves`` and ``figures/sanity``: the same curves drawn by
  :mod:`bench.results.figures` (x in fraction of pixels, or the randomised layers), and
  ``maps/<image id>``: the first few saved maps over their images (``save_maps=true``);
- hparams: the job's resolved config, flattened (``method.n_steps``, ``metric.deletion.step``;
  ``paths`` left out), with the ``metric/*`` means as the HParams dashboard's metrics.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.config.validate import LOGGERS, TENSORBOARD_DIR, check_logger
from bench.core.errors import check_int, first_line
from bench.engine.io import MAP_FLAGS
from bench.engine.record import Record

__all__ = ["LOGGERS", "TENSORBOARD_DIR", "check_logger", "log_job", "tensorboard_job"]

log = logging.getLogger("bench.results.loggers")

#: Config keys not logged as hyperparameters (where the job ran, not what it computed).
HPARAM_SKIP = ("paths", "logger")


def log_job(out_dir: Path, kind: str, **options: Any) -> Path | None:
    """Log the completed job in ``out_dir`` with logger ``kind`` (``none``: nothing); returns
    where the logs went, or None. ``options``: the logger's keys (for ``tensorboard``: ``dir``,
    the folder below the job's, and ``maps``, how many maps to log as images)."""
    check_logger(kind, **options)
    if kind == "none":
        return None
    return tensorboard_job(Path(out_dir), **options)


# --- what is logged -----------------------------------------------------------------------------


def metric_means(scores) -> dict[str, float]:
    """Mean per metric key of a job's scores table, flagged maps and NaN scores left out."""
    keep = scores[~scores["flag"].isin(MAP_FLAGS)]
    means = keep.groupby("metric", sort=True)["value"].mean()
    return {str(k): float(v) for k, v in means.items() if np.isfinite(v)}


def timing_scalars(record: Record | Mapping[str, Any]) -> dict[str, float]:
    """Seconds per image of the whole job, the attribution and each metric, and wall seconds:
    per image the job's timings cover (:meth:`bench.engine.record.Record.images_timed`)."""
    record = Record.of(record)
    timings = record.timings or {}
    wall = record.wall_seconds
    images = record.images_timed()
    out: dict[str, float] = {}
    if isinstance(wall, int | float):
        out["time/wall_seconds"] = float(wall)
    if images > 0:
        if isinstance(wall, int | float):
            out["time/seconds_per_image"] = float(wall) / images
        if "attribute" in timings:
            out["time/attribution_per_image"] = float(timings["attribute"]) / images
        for k, v in timings.items():
            if k.startswith("metric."):
                out[f"time/{k}_per_image"] = float(v) / images
    return out


def _hparam_value(v: Any) -> bool | int | float | str:
    if isinstance(v, bool | int | float | str):
        return v
    return json.dumps(v, default=str)


def hparams_of(record: Record | Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The job's config flattened to dotted keys (lists as JSON text), plus ``method``, ``model``
    and ``dataset``: the names the summary table uses."""
    record = Record.of(record)
    out: dict[str, bool | int | float | str] = {
        "method": record.method.name if record.method is not None else "",
        "model": str((record.model or {}).get("name", "")),
        "dataset": record.dataset.name if record.dataset is not None else "",
    }

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = _hparam_value(node)

    config = record.config or {}
    walk({k: v for k, v in config.items() if k not in HPARAM_SKIP}, "")
    return out


def _png_array(fig, dpi: int = 100) -> np.ndarray:
    """A matplotlib figure as ``[H, W, 3]`` uint8."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def overlay(rgb: np.ndarray | None, m: np.ndarray, style: dict[str, Any]) -> np.ndarray:
    """A map coloured (as in the saliency grid) and blended half and half over its image."""
    from bench.results.figures import map_rgb

    heat = map_rgb(m, style["signed"]) / 255.0
    out = heat if rgb is None else 0.5 * rgb + 0.5 * heat
    return (np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def tensorboard_job(out_dir: Path, dir: str = TENSORBOARD_DIR, maps: int = 4) -> Path:
    """Write the completed job's TensorBoard events into ``<out_dir>/<dir>/`` (replacing what an
    earlier call wrote there); returns that folder."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    from bench.results import figures
    from bench.results.collate import CollateError, read_record, read_scores, verify_files

    check_logger("tensorboard", dir=dir, maps=maps)
    maps = check_int("logger.maps", maps, minimum=0)
    record = read_record(out_dir)
    if record.status != "completed":
        raise CollateError(
            f"{out_dir}: the job is {record.status or 'unknown'}, not completed; "
            "only a completed job is logged."
        )
    verify_files(out_dir, record)
    scores = read_scores(out_dir, record)
    means = metric_means(scores)
    jobs, _ = figures.load_jobs([out_dir])
    job = next((j for j in jobs if j.path == out_dir), None)

    logdir = out_dir / dir
    if logdir.exists():
        shutil.rmtree(logdir)
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for key, value in means.items():
            writer.add_scalar(f"metric/{key}", value, 0)
        for key, value in timing_scalars(record).items():
            writer.add_scalar(key, value, 0)
        if job is not None:
            sets = figures.curve_sets([job])
            for cs in sets:
                for per in cs.per_method.values():
                    mean = np.nanmean(np.stack(list(per.values())), 0)
                    for step, v in enumerate(mean):
                        writer.add_scalar(f"curve/{cs.label}", float(v), step)
            for name, draw in (
                ("curves", figures.curves_figure),
                ("sanity", figures.sanity_figure),
            ):
                fig = draw(sets)
                if fig is not None:
                    writer.add_image(f"figures/{name}", _png_array(fig), 0, dataformats="HWC")
            if maps:
                _log_maps(writer, job, maps)
        exp, ssi, sei = hparams(hparams_of(record), {f"metric/{k}": v for k, v in means.items()})
        # what SummaryWriter.add_hparams writes, but into this run's own folder: add_hparams
        # opens a second writer in a sub-folder, which TensorBoard shows as a second run
        for summary in (exp, ssi, sei):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()
    return logdir


def _log_maps(writer, job, n: int) -> None:
    from bench.results import figures

    saved = figures.saved_maps(job)
    ids = [i for i in saved if i not in job.excluded][:n]
    if not ids:
        return
    try:
        images = figures.job_images(job.record, ids)
    except Exception as err:  # the data is not on this machine: the maps alone
        log.warning("%s: maps logged without their images (%s)", job.path, first_line(err))
        images = {}
    style = figures._overlay_style([saved[i] for i in ids])
    for i in ids:
        image = images.get(i)
        arr = overlay(None if image is None else image["rgb"], saved[i], style)
        writer.add_image(f"maps/{i}", arr, 0, dataformats="HWC")
