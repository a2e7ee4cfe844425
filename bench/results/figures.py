"""Figures from job and sweep folders, as PNG and PDF (matplotlib):

- ``curves``: every perturbation curve in the jobs' ``curves.npz`` (deletion, insertion, pixel
  flipping, ROAD, DAUC/IAUC, ...), one panel per curve, one line per method: the mean over images
  and a band (interquartile range by default), against the fraction of pixels removed (or
  inserted) where the record's metric settings give it, else the step index;
- ``sanity``: the model-randomisation checks' similarity to the original map per randomised layer
  (the layer names from the record's ``curve_x``), one panel per similarity;
- ``saliency_<model>_<dataset>``: rows = images, columns = methods, each map over its image (maps
  from ``maps.npz`` of jobs run with ``save_maps=true``, or, with ``from_cache``, read back from the
  attribution cache);
- ``rank_agreement``: Kendall's tau between the metrics' rankings of the methods (each metric's
  mean per method, negated where lower is better, so +1 = the metrics agree on which is best);
- ``throughput``: seconds per image per method, split into attribution, each metric, setup
  (model, data, cache key) and the rest of the job's wall time.

    bench-figures results/sweeps/A results/sweeps/B --out figures/

Jobs are read through :func:`bench.results.collate.collate`: only completed jobs whose files match their
record, with the same method labels as the summary table (``integrated_gradients[n_steps=8]``),
maps and curves of flagged maps (``nonfinite_map``, ``constant_map``) left out like their rows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import first_line
from bench.engine.io import MAPS
from bench.engine.record import Record
from bench.results.figure_base import (
    FORMATS,
    Job,
    Loaded,
    _figure,
    _grid,
    _legend,
    _legend_below,
    _safe_name,
    load_jobs,
    method_styles,
    save,
)
from bench.results.figure_curves import (
    BAND_WORDS,
    BANDS,
    IMPUTING,
    INSERTING,
    CurveSet,
    band_of,
    curve_axis,
    curve_sets,
    curves_figure,
    sanity_figure,
)
from bench.results.figure_stats import (
    SETUP_PHASES,
    rank_agreement,
    rank_agreement_figure,
    throughput,
    throughput_figure,
)
from bench.results.summary import summarise

log = logging.getLogger("bench.results.figures")

__all__ = [
    "BAND_WORDS",
    "BANDS",
    "FORMATS",
    "IMPUTING",
    "INSERTING",
    "SETUP_PHASES",
    "CurveSet",
    "Job",
    "band_of",
    "cached_maps",
    "curve_axis",
    "curve_sets",
    "curves_figure",
    "figures",
    "job_images",
    "load_jobs",
    "MAP_CMAPS",
    "map_rgb",
    "map_scaled",
    "method_styles",
    "rank_agreement",
    "rank_agreement_figure",
    "saliency_figure",
    "saliency_grids",
    "sanity_figure",
    "save",
    "saved_maps",
    "throughput",
    "throughput_figure",
    "write_figures",
    "_figure",
    "_grid",
    "_legend",
    "_legend_below",
]


# --- saliency grids ------------------------------------------------------------------------------


def _safe_target(node: dict[str, Any], what: str) -> None:
    """A record's config is data, not code: its targets must be ones a config may name, and a
    model of the user's own module is not imported from it (the record cannot opt in)."""
    from bench.config.trust import check_config
    from bench.core.errors import ConfigError

    try:
        check_config({what: node}, trust_code=False)
    except ConfigError as err:
        raise ConfigError(
            f"a job's record: {err} A record is data: figures do not run code named in it "
            "(save the maps with save_maps=true to draw them)."
        ) from err


def job_images(record: Record, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``id -> {"rgb": [H, W, 3] in [0, 1], "target": int, "tensor": [3, H, W], "class": str,
    "names": [the dataset's class names]}`` of the items ``ids`` of the job's dataset, composed
    from its record's config (no subset)."""
    from hydra.utils import instantiate

    from bench.data.subset import SUBSET_KEYS, select

    config = record.config or {}
    node = {k: v for k, v in (config.get("dataset") or {}).items() if k not in SUBSET_KEYS}
    _safe_target(node, "dataset")
    base = instantiate(node)
    selection = select(base, ids=list(ids))
    model = config.get("model") or {}
    mean = np.asarray(node.get("mean") or model.get("mean") or [0.0, 0.0, 0.0], dtype=float)
    std = np.asarray(node.get("std") or model.get("std") or [1.0, 1.0, 1.0], dtype=float)
    names = list(getattr(base, "class_names", []) or [])
    out = {}
    for i in range(len(selection)):
        s = selection[i]
        rgb = s.image.detach().cpu().numpy().transpose(1, 2, 0) * std + mean
        target = int(s.target)
        out[str(s.id)] = {
            "rgb": np.clip(rgb, 0.0, 1.0),
            "target": target,
            "tensor": s.image,
            "class": names[target] if 0 <= target < len(names) else str(target),
            "names": names,
        }
    return out


def saved_maps(job: Job) -> dict[str, np.ndarray]:
    """``id -> map [H, W]`` from the job's ``maps.npz`` ({} when it saved none)."""
    path = job.path / MAPS
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {str(i): m for i, m in zip(z["ids"], z["maps"])}


def cached_maps(job: Job, n: int) -> dict[str, np.ndarray]:
    """``id -> map`` for the job's first ``n`` images read back from its attribution cache: the
    keys are recomputed as the job computed them (model weights' checksum, image checksums,
    explained classes); maps not in the cache are missing. {} when the job used no cache."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from bench.data.subset import SUBSET_KEYS, select
    from bench.engine.cache import MapCache, image_digests, job_spec

    r = job.record
    cache_info = r.cache or {}
    if cache_info.get("mode") in (None, "off") or not cache_info.get("root"):
        return {}
    cfg = OmegaConf.create(r.config or {})
    node = OmegaConf.to_container(cfg, resolve=True)
    _safe_target(node.get("model"), "model")
    _safe_target(node.get("dataset"), "dataset")
    data = dict(node["dataset"])
    subset = {k: data.pop(k) for k in SUBSET_KEYS if k in data}
    base = instantiate(data)
    selection = select(base, seed=int(node.get("seed", 0)), **subset)
    samples = [selection[i] for i in range(min(n, len(selection)))]
    if not samples:
        return {}
    model = instantiate(node["model"]).eval()
    images = torch.stack([s.image for s in samples])
    if node.get("explain") == "prediction":
        with torch.no_grad():
            targets = model(images).argmax(1)
    else:
        targets = torch.tensor([int(s.target) for s in samples])
    device = torch.device(r.device_name() or "cpu")
    cache = MapCache(Path(cache_info["root"]).parent, "read", cache_info.get("dtype", "float32"))
    cache.start(job_spec(cfg, model, r.model, device))
    digests = image_digests(images)
    keys = cache.keys([s.id for s in samples], digests, targets)
    out = {}
    for s, key, digest in zip(samples, keys, digests):
        m = cache.get(key, digest)
        if m is not None:
            out[str(s.id)] = m
    return out


#: The colour map of every attribution map drawn (grids, report, TensorBoard): viridis
#: (perceptually uniform) for maps of one sign, from the map's minimum to its 99th percentile;
#: a diverging blue-white-red centred on 0 for signed maps, to +-the 99th percentile of |map|.
MAP_CMAPS = {False: "viridis", True: "RdBu_r"}


def _overlay_style(maps: Sequence[np.ndarray]) -> dict[str, Any]:
    """Colour map and limits for one method's maps: signed maps (a tenth of their mass below 0)
    on a diverging scale around 0, the others from their minimum to their 99th percentile."""
    flat = np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps])
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return {"cmap": MAP_CMAPS[False], "signed": False}
    neg = -flat[flat < 0].sum()
    signed = bool(neg > 0.1 * np.abs(flat).sum())
    return {"cmap": MAP_CMAPS[signed], "signed": signed}


def _limits(m: np.ndarray, signed: bool) -> tuple[float, float]:
    m = np.asarray(m, dtype=float)
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        return 0.0, 1.0
    if signed:
        hi = float(np.percentile(np.abs(finite), 99)) or 1.0
        return -hi, hi
    lo, hi = float(finite.min()), float(np.percentile(finite, 99))
    return lo, hi if hi > lo else lo + 1.0


def map_scaled(m: np.ndarray, signed: bool) -> np.ndarray:
    """A map ``[H, W]`` as it is coloured: ``(m - lo) / (hi - lo)`` clipped to [0, 1] with the
    limits above (signed: 0.5 is 0); non-finite values count as 0."""
    lo, hi = _limits(m, signed)
    return np.clip((np.nan_to_num(np.asarray(m, dtype=float)) - lo) / (hi - lo), 0.0, 1.0)


def map_rgb(m: np.ndarray, signed: bool) -> np.ndarray:
    """A map coloured with :data:`MAP_CMAPS`: ``[H, W, 3]`` uint8."""
    from matplotlib import colormaps

    rgb = colormaps[MAP_CMAPS[signed]](map_scaled(m, signed))[..., :3]
    return (rgb * 255 + 0.5).astype(np.uint8)


def saliency_grids(
    jobs: Sequence[Job], n_images: int = 6, from_cache: bool = False
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (model, dataset): the image ids shown, their images (when the dataset can be
    composed here) and every method's maps, for :func:`saliency_figure`."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for job in jobs:
        maps = saved_maps(job)
        if not maps and from_cache:
            try:
                maps = cached_maps(job, n_images)
            except Exception as err:  # a model or dataset not available on this machine
                log.warning("%s: maps not read from the cache (%s)", job.path, first_line(err))
        if not maps:
            continue
        grid = out.setdefault(job.group, {"methods": {}, "records": []})
        per = grid["methods"].setdefault(job.method, {})
        for i, m in maps.items():
            if i not in job.excluded:
                per.setdefault(i, m)
        grid["records"].append(job.record)
    for group, grid in out.items():
        methods = grid["methods"]
        first = next(iter(methods.values()))
        common = [i for i in first if all(i in per for per in methods.values())]
        ids = (common or list(first))[:n_images]
        grid["ids"] = ids
        grid["images"] = {}
        try:
            grid["images"] = job_images(grid["records"][0], ids)
        except Exception as err:  # data not on this machine: the maps are drawn on their own
            log.warning(
                "%s / %s: images not composed from the record (%s); maps drawn without them",
                *group,
                first_line(err),
            )
    return out


def saliency_figure(group: tuple[str, str], grid: dict[str, Any]):
    """Rows = images, columns = the image, then each method's map over it (one panel each)."""
    ids, images = grid["ids"], grid["images"]
    methods = sorted(grid["methods"])
    styles = {
        m: _overlay_style([grid["methods"][m][i] for i in ids if i in grid["methods"][m]])
        for m in methods
    }
    cols = len(methods) + 1
    cell = 1.55
    prefix = _id_prefix(ids)
    fig = _figure(figsize=(cell * cols + 1.2, cell * len(ids) + 0.6))
    axes = fig.subplots(len(ids), cols, squeeze=False)
    bars: dict[bool, Any] = {}
    for r, i in enumerate(ids):
        image = images.get(i)
        ax = axes[r, 0]
        if image is not None:
            ax.imshow(image["rgb"])
        ax.set_ylabel(_short_id(i, prefix) + (f"\n{image['class']}" if image else ""), fontsize=7)
        if r == 0:
            ax.set_title("image", fontsize=8)
        for c, method in enumerate(methods, start=1):
            ax = axes[r, c]
            m = grid["methods"][method].get(i)
            if image is not None:
                ax.imshow(image["rgb"])
            if m is not None:
                m = np.asarray(m, dtype=float)
                signed = styles[method]["signed"]
                bars[signed] = ax.imshow(
                    map_scaled(m, signed) * (2 if signed else 1) - (1 if signed else 0),
                    cmap=styles[method]["cmap"],
                    vmin=-1 if signed else 0,
                    vmax=1,
                    alpha=0.5 if image is not None else 1.0,
                )
            else:
                ax.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=7)
            if r == 0:
                signed = " (signed)" if styles[method]["signed"] else ""
                ax.set_title(_wrap(method) + signed, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for signed, handle in sorted(bars.items()):
        label = "signed map / 99th pct of |map|" if signed else "map: min (0) to 99th pct (1)"
        bar = fig.colorbar(handle, ax=axes, shrink=0.6, aspect=30)
        bar.set_label(label, fontsize=7)
        bar.solids.set_alpha(1.0)  # the colour map itself, not as blended over the images
        bar.ax.tick_params(labelsize=6)
    model, dataset = group
    note = "" if images else " (images not available here: maps alone)"
    ids_note = f"; rows: image ids {prefix}…" if prefix else ""
    fig.suptitle(f"Attribution maps: {model} on {dataset}{ids_note}{note}", fontsize=9)
    return fig


def _id_prefix(ids: Sequence[str]) -> str:
    """The prefix all ``ids`` share, up to a separator (``shapes-0-test-``); "" for one id."""
    if len(ids) < 2:
        return ""
    common = os.path.commonprefix(list(ids))
    cut = max(common.rfind(c) for c in "-_/:.")
    return common[: cut + 1] if cut >= 0 else ""


def _short_id(i: str, prefix: str = "") -> str:
    i = i[len(prefix) :] if prefix else i
    return i if len(i) <= 18 else "…" + i[-17:]


def _wrap(label: str, width: int = 16) -> str:
    """Break a long method label (``integrated_gradients[n_steps=8]``) at ``[`` or ``,``."""
    if len(label) <= width:
        return label
    return re.sub(r"(\[|,)", lambda m: m.group(1) + "\n", label, count=2)


# --- every figure ---------------------------------------------------------------------------------


def figures(
    roots: Sequence[str | Path],
    n_images: int = 6,
    band: str = "iqr",
    from_cache: bool = False,
    loaded: Loaded | None = None,
) -> dict[str, Any]:
    """Every figure the jobs under ``roots`` allow: name -> matplotlib Figure (``loaded``: the
    jobs and collation of ``roots`` when the caller has them already)."""
    if band not in BANDS:
        raise ValueError(f"band={band!r} is not valid; accepted: {', '.join(BANDS)}.")
    jobs, collation = loaded if loaded is not None else load_jobs(roots)
    for line in collation.report():
        log.warning("%s", line)
    out: dict[str, Any] = {}
    if not jobs:
        return out
    sets = curve_sets(jobs)
    summary = summarise(collation.rows)
    made = {
        "curves": curves_figure(sets, band),
        "sanity": sanity_figure(sets, band),
        "rank_agreement": rank_agreement_figure(summary),
        "throughput": throughput_figure(jobs),
    }
    for group, grid in saliency_grids(jobs, n_images, from_cache).items():
        made[f"saliency_{_safe_name(group[0])}_{_safe_name(group[1])}"] = saliency_figure(
            group, grid
        )
    skipped = [k for k, v in made.items() if v is None]
    if skipped:
        log.info("no data for: %s", ", ".join(skipped))
    if not any(k.startswith("saliency_") for k in made):
        log.info(
            "no saliency grid: no job saved its maps (run with save_maps=true%s)",
            "" if from_cache else ", or pass --from-cache to read them from the attribution cache",
        )
    return {k: v for k, v in made.items() if v is not None}


def write_figures(
    roots: Sequence[str | Path],
    out_dir: str | Path,
    n_images: int = 6,
    band: str = "iqr",
    from_cache: bool = False,
    formats: Sequence[str] = FORMATS,
    loaded: Loaded | None = None,
) -> list[Path]:
    """Write every figure the completed jobs under ``roots`` allow into ``out_dir`` as PNG and PDF
    (see the module's docstring for the list); returns the files written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for name, fig in figures(roots, n_images, band, from_cache, loaded).items():
        written += save(fig, out_dir / name, formats)
    return written
