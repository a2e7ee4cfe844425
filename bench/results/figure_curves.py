"""Perturbation curves and model-randomisation checks of :mod:`bench.results.figures`: every curve
in the jobs' ``curves.npz``, merged per (model, dataset, method label) (:func:`curve_sets`), drawn
as a mean over images with a band (:func:`curves_figure`, :func:`sanity_figure`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.engine.io import CURVES
from bench.engine.record import MetricInfo
from bench.results import stats
from bench.results.figure_base import Job, _figure, _grid, _legend, method_styles
from bench.results.summary import ARROWS

#: The band drawn around a mean curve: interquartile range over images, the tables' 95%
#: bootstrap interval of the mean (BCa, resampling images), or none.
BANDS = ("iqr", "ci95", "none")
BAND_WORDS = {
    "iqr": "band: interquartile range over images",
    "ci95": "band: 95% bootstrap interval of the mean",
    "none": "",
}
#: Metric classes whose curves insert pixels into a blank or blurred image (the others remove).
INSERTING = frozenset({"Insertion", "IAUC", "IC"})
#: Metric classes whose curves impute the removed pixels (ROAD).
IMPUTING = frozenset({"RoadMoRF", "RoadLeRF", "RoadABC"})


@dataclass
class CurveSet:
    """The curves of one curve key (``deletion``, ``model_randomisation_cascading.ssim``) for one
    (model, dataset): per method, image id -> curve."""

    model: str
    dataset: str
    label: str
    metric: str
    suffix: str
    info: MetricInfo
    size: tuple[int, int] | None
    per_method: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def sanity(self) -> bool:
        return self.info.curve_x is not None

    @property
    def length(self) -> int:
        return next(len(c) for per in self.per_method.values() for c in per.values())

    def direction(self) -> str:
        return str((self.info.directions or {}).get(self.suffix, "none"))


def _split_key(key: str, metrics: Iterable[str]) -> tuple[str | None, str]:
    """A ``curves.npz`` key into (base metric, suffix): the longest metric name it starts with."""
    best = None
    for m in metrics:
        if (key == m or key.startswith(m + ".")) and (best is None or len(m) > len(best)):
            best = m
    if best is None:
        return None, ""
    return best, key[len(best) + 1 :]


def curve_sets(jobs: Sequence[Job]) -> list[CurveSet]:
    """Every curve key of every job, merged over jobs of the same (model, dataset, method label)
    (shards); an image met twice (the same cell in two folders) is counted once."""
    out: dict[tuple[str, str, str], CurveSet] = {}
    for job in jobs:
        path = job.path / CURVES
        if not path.is_file():
            continue
        size = job.image_size()
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        for key, values in arrays.items():
            if key.endswith(".ids") or values.ndim != 2:
                continue
            metric, suffix = _split_key(key, job.record.metrics or {})
            if metric is None:
                continue
            ids = arrays.get(f"{key}.ids")
            ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(values))]
            label = job.metric_labels.get(metric, metric) + (f".{suffix}" if suffix else "")
            cs = out.setdefault(
                (job.model, job.dataset, label),
                CurveSet(job.model, job.dataset, label, metric, suffix, job.info(metric), size),
            )
            per = cs.per_method.setdefault(job.method, {})
            for i, curve in zip(ids, values):
                if i not in job.excluded:
                    per.setdefault(i, np.asarray(curve, dtype=float))
    sets = [cs for cs in out.values() if any(cs.per_method.values())]
    for cs in sets:
        cs.per_method = {m: per for m, per in cs.per_method.items() if per}
    return sorted(sets, key=lambda c: (c.model, c.dataset, c.label))


def curve_axis(
    info: MetricInfo | Mapping[str, Any], n: int, size: tuple[int, int] | None
) -> tuple[np.ndarray, str]:
    """The x values of a perturbation curve of ``n`` points and the axis label: the fraction of
    pixels (or tiles) changed at each point where the metric's settings (its record,
    ``metrics.<name>``) say it and the length agrees, else the step index."""
    if not isinstance(info, MetricInfo):
        info = MetricInfo.from_dict(dict(info))
    settings = info.settings or {}
    cls = str(info.cls or "")
    verb = "inserted" if cls in INSERTING else "imputed" if cls in IMPUTING else "removed"
    fractions = settings.get("fractions")
    if isinstance(fractions, list) and len(fractions) == n:
        return np.asarray(fractions, dtype=float), f"fraction of pixels {verb}"
    if size is not None:
        h, w = size
        if isinstance(settings.get("step"), int):
            p = int(settings.get("patch_size") or 1)
            units, step = (h // p) * (w // p), settings["step"]
            if units and math.ceil(units / step) + 1 == n:
                what = "pixels" if p == 1 else f"{p}×{p} tiles"
                return np.minimum(np.arange(n) * step, units) / units, f"fraction of {what} {verb}"
        if isinstance(settings.get("max_steps"), int):
            grid = settings.get("map_size")
            cells = int(np.prod(grid)) if grid else h * w
            per = cells // min(settings["max_steps"], cells)
            if per and math.ceil(cells / per) + 1 == n:
                return np.minimum(np.arange(n) * per, cells) / cells, f"fraction of cells {verb}"
    return np.arange(n, dtype=float), "step"


def band_of(curves: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper edge of the band over images (rows of ``curves``), or None: the
    interquartile range, or the tables' interval of the mean at every step
    (:func:`bench.results.stats.curve_band`)."""
    if band == "none" or len(curves) < 2:
        return None
    if band == "iqr":
        return np.nanpercentile(curves, 25, axis=0), np.nanpercentile(curves, 75, axis=0)
    return stats.curve_band(curves)


def _title(cs: CurveSet, groups: int) -> str:
    """``<curve> <arrow>  (n = ...)``, broken before the suffix when long, and the model and
    dataset when the figure holds several."""
    arrow = ARROWS.get(cs.direction(), "")
    label = cs.label
    if len(label) > 30 and "." in label:
        metric, _, suffix = label.rpartition(".")
        label = f"{metric}\n.{suffix}"
    head = f"{label} {arrow}".rstrip() + f"  ({_n_text(cs.per_method)})"
    return f"{head}\n{cs.model} / {cs.dataset}" if groups > 1 else head


def _n_text(per_method: dict[str, dict[str, np.ndarray]]) -> str:
    ns = sorted({len(v) for v in per_method.values()})
    return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"


def curves_figure(sets: Sequence[CurveSet], band: str = "iqr"):
    """Perturbation curves (every curve set without layer labels): a panel per curve, a line per
    method (mean over images) with its band; None when there is none."""
    sets = [cs for cs in sets if not cs.sanity]
    if not sets:
        return None
    groups = len({(cs.model, cs.dataset) for cs in sets})
    methods = sorted({m for cs in sets for m in cs.per_method})
    styles = method_styles(methods)
    rows, cols = _grid(len(sets), 3)
    fig = _figure(figsize=(4.3 * cols, 3.3 * rows + 0.7))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, cs in zip(axes, sets):
        x, xlabel = curve_axis(cs.info, cs.length, cs.size)
        for method, per in sorted(cs.per_method.items()):
            curves = np.stack(list(per.values()))
            if curves.shape[1] != len(x):
                continue
            ax.plot(x, np.nanmean(curves, 0), lw=1.6, **styles[method])
            edges = band_of(curves, band)
            if edges is not None:
                ax.fill_between(x, *edges, color=styles[method]["color"], alpha=0.18, lw=0)
        ax.set_title(_title(cs, groups), fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(_curve_ylabel(cs), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(sets) :]:
        ax.set_visible(False)
    words = BAND_WORDS[band]
    fig.suptitle(
        "Perturbation curves: mean over images" + (f" ({words})" if words else ""), fontsize=10
    )
    _legend(fig, styles, methods)
    return fig


def _curve_ylabel(cs: CurveSet) -> str:
    settings = cs.info.settings or {}
    if cs.info.cls in IMPUTING:
        return "class probability" if "probability" in cs.suffix else "accuracy"
    score = settings.get("score")
    if score == "logit":
        return "logit of the class"
    return "probability of the class" if score == "probability" else "score"


def sanity_figure(sets: Sequence[CurveSet], band: str = "iqr"):
    """Model-randomisation checks: similarity of each randomised model's map to the original, per
    randomised layer (x labels: the record's ``curve_x``), a panel per similarity; None when the
    jobs ran no such metric."""
    sets = [cs for cs in sets if cs.sanity]
    if not sets:
        return None
    groups = len({(cs.model, cs.dataset) for cs in sets})
    methods = sorted({m for cs in sets for m in cs.per_method})
    styles = method_styles(methods)
    longest = max(len(cs.info.curve_x) for cs in sets)
    width = max(4.3, min(0.28 * longest + 1.5, 12.0))
    cols = max(1, min(len(sets), int(16 // width)))
    rows = math.ceil(len(sets) / cols)
    label_len = max(len(str(s)) for cs in sets for s in cs.info.curve_x)
    height = 2.6 + 0.065 * min(label_len, 40)
    fig = _figure(figsize=(width * cols, height * rows + 0.7))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, cs in zip(axes, sets):
        labels = [str(s) for s in cs.info.curve_x]
        n = cs.length
        x = np.arange(n)
        for method, per in sorted(cs.per_method.items()):
            curves = np.stack(list(per.values()))
            ax.plot(x, np.nanmean(curves, 0), lw=1.6, marker="o", ms=3, **styles[method])
            edges = band_of(curves, band)
            if edges is not None:
                ax.fill_between(x, *edges, color=styles[method]["color"], alpha=0.18, lw=0)
        if len(labels) == n:
            every = max(1, math.ceil(n / 40))
            ax.set_xticks(x[::every], labels[::every], rotation=90, fontsize=6.5)
        settings = cs.info.settings or {}
        order = " ".join(str(settings.get(k, "")) for k in ("order", "direction")).strip()
        what = "layer randomised" if len(labels) == n else "step"
        ax.set_xlabel(f"{what} ({order.replace('_', '-')})" if order else what, fontsize=8)
        ax.set_ylabel("similarity to the original map", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(_title(cs, groups), fontsize=9)
    for ax in axes[len(sets) :]:
        ax.set_visible(False)
    words = BAND_WORDS[band]
    fig.suptitle(
        "Model-randomisation sanity checks: mean similarity over images"
        + (f" ({words}); lower = the map depends more on the weights" if words else ""),
        fontsize=10,
    )
    _legend(fig, styles, methods)
    return fig
