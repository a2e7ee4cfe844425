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

import io
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import first_line
from bench.engine.io import CURVES, MAP_FLAGS, MAPS, atomic_write_bytes
from bench.results import stats
from bench.results.collate import (
    ARROWS,
    Collation,
    collate,
    read_record,
    summarise,
)

log = logging.getLogger("bench.results.figures")

FORMATS = ("png", "pdf")
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


# --- reading the jobs ------------------------------------------------------------------------------


@dataclass
class Job:
    """One completed job as the figures see it: where, its record, its collated labels."""

    path: Path
    record: dict[str, Any]
    model: str
    dataset: str
    method: str  #: the collated method label (names what differs between jobs sharing a name)
    metric_labels: dict[str, str] = field(default_factory=dict)  #: base metric -> collated label
    excluded: set[str] = field(default_factory=set)  #: ids of flagged maps (left out of means)

    @property
    def group(self) -> tuple[str, str]:
        return self.model, self.dataset

    def info(self, metric: str) -> dict[str, Any]:
        return (self.record.get("metrics") or {}).get(metric) or {}

    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the scored inputs: the saved maps' shape, else the model's input size."""
        maps = self.path / MAPS
        if maps.is_file():
            try:
                with np.load(maps, allow_pickle=False) as z:
                    shape = z["maps"].shape
                return int(shape[-2]), int(shape[-1])
            except (OSError, ValueError, KeyError):
                pass
        size = (self.record.get("model") or {}).get("input_size")
        if isinstance(size, list) and len(size) == 2:
            return int(size[0]), int(size[1])
        return None


def _variant_label(metric: str, row_metrics: Iterable[str]) -> str:
    """``metric`` with the variant suffix collation gave it (``deletion[step=448]``), if any."""
    for r in row_metrics:
        if not r.startswith(metric + "["):
            continue
        depth = 0
        for i, ch in enumerate(r[len(metric) :], start=len(metric)):
            depth += {"[": 1, "]": -1}.get(ch, 0)
            if depth == 0:
                return r[: i + 1]
    return metric


def load_jobs(roots: Sequence[str | Path]) -> tuple[list[Job], Collation]:
    """The completed jobs under ``roots`` (see :func:`bench.results.collate.collate`) and the collation."""
    collation = collate(roots)
    jobs = []
    rows = collation.rows
    if rows.empty:
        return jobs, collation
    for job, g in rows.groupby("job", sort=True):
        record = read_record(Path(job))
        names = list(record.get("metrics") or {})
        metrics = g["metric"].unique()
        flagged = g["flag"].isin(MAP_FLAGS) if "flag" in g else pd.Series(False, index=g.index)
        jobs.append(
            Job(
                path=Path(job),
                record=record,
                model=str(g["model"].iloc[0]),
                dataset=str(g["dataset"].iloc[0]),
                method=str(g["method"].iloc[0]),
                metric_labels={m: _variant_label(m, metrics) for m in names},
                excluded=set(g.loc[flagged, "image_id"].astype(str)),
            )
        )
    return jobs, collation


# --- curves ------------------------------------------------------------------------------------------


@dataclass
class CurveSet:
    """The curves of one curve key (``deletion``, ``model_randomisation_cascading.ssim``) for one
    (model, dataset): per method, image id -> curve."""

    model: str
    dataset: str
    label: str
    metric: str
    suffix: str
    info: dict[str, Any]
    size: tuple[int, int] | None
    per_method: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def sanity(self) -> bool:
        return self.info.get("curve_x") is not None

    @property
    def length(self) -> int:
        return next(len(c) for per in self.per_method.values() for c in per.values())

    def direction(self) -> str:
        directions = self.info.get("directions") or {}
        return str(directions.get(self.suffix, "none"))


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
            metric, suffix = _split_key(key, job.record.get("metrics") or {})
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
    info: dict[str, Any], n: int, size: tuple[int, int] | None
) -> tuple[np.ndarray, str]:
    """The x values of a perturbation curve of ``n`` points and the axis label: the fraction of
    pixels (or tiles) changed at each point where the metric's settings say it and the length
    agrees, else the step index."""
    settings = info.get("settings") or {}
    cls = str(info.get("class", ""))
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


# --- drawing helpers ------------------------------------------------------------------------------


def _figure(**kwargs: Any):
    """A figure not registered with pyplot (no global state, freed with its last reference)."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def method_styles(methods: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One colour (and, past 20 methods, a line style) per method, stable across figures."""
    from matplotlib import colormaps

    names = sorted(set(methods))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    k = cmap.N
    styles = ("-", "--", ":", "-.")
    return {
        m: {"color": cmap(i % k), "linestyle": styles[(i // k) % len(styles)]}
        for i, m in enumerate(names)
    }


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


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


def _legend(fig, styles: dict[str, dict[str, Any]], methods: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    _legend_below(fig, [Line2D([], [], lw=2, **styles[m]) for m in methods], list(methods))


def _legend_below(fig, handles: list, names: list[str]) -> None:
    """One legend for the whole figure, below its panels."""
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=min(len(names), 5),
        fontsize=8,
        frameon=False,
    )


# --- the figures -------------------------------------------------------------------------------------


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
    settings = cs.info.get("settings") or {}
    if cs.info.get("class", "") in IMPUTING:
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
    longest = max(len(cs.info["curve_x"]) for cs in sets)
    width = max(4.3, min(0.28 * longest + 1.5, 12.0))
    cols = max(1, min(len(sets), int(16 // width)))
    rows = math.ceil(len(sets) / cols)
    label_len = max(len(str(s)) for cs in sets for s in cs.info["curve_x"])
    height = 2.6 + 0.065 * min(label_len, 40)
    fig = _figure(figsize=(width * cols, height * rows + 0.7))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, cs in zip(axes, sets):
        labels = [str(s) for s in cs.info["curve_x"]]
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
        settings = cs.info.get("settings") or {}
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


def rank_agreement(summary: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (model, dataset): :func:`bench.results.stats.rank_agreement` (Kendall's tau-b between
    every two metrics' direction-aware rankings of the methods, from the summary's means) as a
    metric × metric matrix; descriptive metrics and metrics that do not separate the methods are
    left out. Needs two methods and two metrics. ``attrs``: ``methods`` (the fewest and most
    methods two metrics both ranked), ``directions``, ``note`` (a warning below
    :data:`bench.results.stats.MIN_METHODS` methods)."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    ranks = stats.rank_methods(summary) if not summary.empty else summary
    if ranks.empty:
        return out
    ranks = ranks[ranks.groupby(["model", "dataset", "metric"])["rank"].transform("nunique") > 1]
    agree = stats.rank_agreement(ranks)
    for (model, dataset), g in agree.groupby(["model", "dataset"], sort=True):
        tau = g.pivot(index="metric_a", columns="metric_b", values="tau")
        tau.index.name = tau.columns.name = None
        scored = g[g["n_methods"] >= 2]
        if len(tau) < 2 or scored.empty:
            continue
        lo, hi = int(scored["n_methods"].min()), int(scored["n_methods"].max())
        tau.attrs["methods"] = (lo, hi)
        mine = ranks[(ranks["model"] == model) & (ranks["dataset"] == dataset)]
        tau.attrs["directions"] = mine.groupby("metric")["direction"].first().to_dict()
        tau.attrs["note"] = stats.few_methods(lo)
        out[(str(model), str(dataset))] = tau
    return out


def rank_agreement_figure(summary: pd.DataFrame):
    """Heatmap of :func:`rank_agreement`, a panel per (model, dataset); None when none applies."""
    from matplotlib import colormaps

    taus = rank_agreement(summary)
    if not taus:
        return None
    k = max(len(t) for t in taus.values())
    side = max(3.2, 0.5 * k + 2.2)
    rows, cols = _grid(len(taus), 2)
    fig = _figure(figsize=(side * cols + 0.8, side * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cmap = colormaps["RdBu"].with_extremes(bad="0.85")
    image = None
    for ax, ((model, dataset), tau) in zip(axes, taus.items()):
        arrows = tau.attrs["directions"]
        labels = [f"{m} {ARROWS.get(arrows.get(m, ''), '')}".rstrip() for m in tau.index]
        image = ax.imshow(tau.to_numpy(dtype=float), cmap=cmap, vmin=-1, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        if len(labels) <= 16:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    v = tau.iat[i, j]
                    text = "n/a" if np.isnan(v) else f"{v:.2f}"
                    colour = "white" if not np.isnan(v) and abs(v) > 0.6 else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=colour)
        lo, hi = tau.attrs["methods"]
        methods = f"{lo} methods" if lo == hi else f"{lo}–{hi} methods: those both metrics scored"
        warn = f"\nWARNING: {tau.attrs['note']}" if tau.attrs["note"] else ""
        ax.set_title(f"{model} / {dataset} ({methods}){warn}", fontsize=9)
    for ax in axes[len(taus) :]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes[: len(taus)].tolist(), shrink=0.7, label="Kendall's τ")
    fig.suptitle("Rank agreement between metrics (method rankings, best first)", fontsize=10)
    return fig


#: Timings of setup phases (the rest are the attribution and the metrics).
SETUP_PHASES = ("load_model", "load_data", "cache_key")


def throughput(jobs: Sequence[Job]) -> pd.DataFrame:
    """Seconds per image per (model, dataset, method) and phase (``attribution``, each metric,
    ``data`` (waiting for the loader), ``setup``, ``other``: wall time no phase accounts for), summed over the jobs of a method
    (shards), and the attribution cache's hits."""
    out = []
    for job in jobs:
        r = job.record
        timings = r.get("timings") or {}
        wall = r.get("wall_seconds")
        data = r.get("dataset") or {}
        images = int(data.get("selected") or 0) - int(
            (r.get("resumed") or {}).get("images_kept", 0)
        )
        if images <= 0 or not isinstance(wall, int | float):
            continue
        phases: dict[str, float] = {"attribution": float(timings.get("attribute", 0.0))}
        for k, v in timings.items():
            if k.startswith("metric."):
                phases[job.metric_labels.get(k[7:], k[7:])] = float(v)
        if "data" in timings:  # waiting for the DataLoader (records since the throughput block)
            phases["data"] = float(timings["data"])
        phases["setup"] = float(sum(timings.get(k, 0.0) for k in SETUP_PHASES))
        phases["other"] = max(0.0, float(wall) - float(sum(timings.values())))
        cache = r.get("cache") or {}
        for phase, seconds in phases.items():
            out.append(
                dict(
                    model=job.model,
                    dataset=job.dataset,
                    method=job.method,
                    phase=phase,
                    seconds=seconds,
                    images=images,
                    cache_hits=int(cache.get("hits", 0)),
                )
            )
    df = pd.DataFrame(out)
    if df.empty:
        return df
    keys = ["model", "dataset", "method", "phase"]
    df = df.groupby(keys, sort=False, as_index=False)[["seconds", "images", "cache_hits"]].sum()
    df["per_image"] = df["seconds"] / df["images"]
    return df


def throughput_figure(jobs: Sequence[Job]):
    """Stacked bars of seconds per image per method, a panel per (model, dataset); None without
    timings."""
    from matplotlib import colormaps

    df = throughput(jobs)
    if df.empty:
        return None
    phases = list(dict.fromkeys(df["phase"]))
    metric_phases = [p for p in phases if p not in ("attribution", "setup", "other")]
    cmap = colormaps["tab20"]
    colours = {"attribution": "#4c72b0", "setup": "0.55", "other": "0.8"}
    colours.update({p: cmap((2 * i + 2) % 20) for i, p in enumerate(sorted(metric_phases))})
    order = ["attribution", *sorted(metric_phases), "setup", "other"]
    groups = list(df.groupby(["model", "dataset"], sort=True))
    heights = [0.42 * g["method"].nunique() + 1.3 for _, g in groups]
    fig = _figure(figsize=(8.5, sum(heights) + 0.9))
    axes = np.atleast_1d(
        fig.subplots(len(groups), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    ).ravel()
    for ax, ((model, dataset), g) in zip(axes, groups):
        table = g.pivot_table(index="method", columns="phase", values="per_image", aggfunc="sum")
        table = table.reindex(columns=[p for p in order if p in table.columns]).fillna(0.0)
        total = table.sum(axis=1).sort_values()
        table = table.loc[total.index]
        hits = g.groupby("method")[["cache_hits", "images"]].max()
        labels = [
            f"{m}  (maps from cache: {hits.loc[m, 'cache_hits']}/{hits.loc[m, 'images']})"
            if hits.loc[m, "cache_hits"]
            else m
            for m in table.index
        ]
        left = np.zeros(len(table))
        for phase in table.columns:
            ax.barh(labels, table[phase], left=left, color=colours[phase], label=phase, height=0.6)
            left += table[phase].to_numpy()
        for y, t in enumerate(total):
            ax.text(t, y, f" {t:.3g} s", va="center", fontsize=7)
        ax.set_xlim(0, float(total.max()) * 1.15 or 1.0)
        ax.set_xlabel("seconds per image", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{model} / {dataset}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    _legend_below(fig, handles, names)
    device = sorted({str((j.record.get("device") or {}).get("device", "?")) for j in jobs})
    fig.suptitle(f"Throughput (device: {', '.join(device)})", fontsize=10)
    return fig


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


def job_images(record: dict[str, Any], ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``id -> {"rgb": [H, W, 3] in [0, 1], "target": int, "tensor": [3, H, W], "class": str}`` of
    the items ``ids`` of the job's dataset, composed from its record's config (no subset)."""
    from hydra.utils import instantiate

    from bench.data.subset import SUBSET_KEYS, select

    config = record.get("config") or {}
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
    cache_info = r.get("cache") or {}
    if cache_info.get("mode") in (None, "off") or not cache_info.get("root"):
        return {}
    cfg = OmegaConf.create(r.get("config") or {})
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
    device = torch.device(str((r.get("device") or {}).get("device", "cpu")))
    cache = MapCache(Path(cache_info["root"]).parent, "read", cache_info.get("dtype", "float32"))
    cache.start(job_spec(cfg, model, r["model"], device))
    digests = image_digests(images)
    keys = cache.keys([s.id for s in samples], digests, targets)
    out = {}
    for s, key, digest in zip(samples, keys, digests):
        m = cache.get(key, digest)
        if m is not None:
            out[str(s.id)] = m
    return out


def _overlay_style(maps: Sequence[np.ndarray]) -> dict[str, Any]:
    """Colour map and limits for one method's maps: signed maps (a tenth of their mass below 0)
    on a diverging scale around 0, the others from their minimum to their 99th percentile."""
    flat = np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps])
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return {"cmap": "jet", "signed": False}
    neg = -flat[flat < 0].sum()
    signed = neg > 0.1 * np.abs(flat).sum()
    return {"cmap": "bwr" if signed else "jet", "signed": bool(signed)}


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
    fig = _figure(figsize=(cell * cols + 0.4, cell * len(ids) + 0.6))
    axes = fig.subplots(len(ids), cols, squeeze=False)
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
                lo, hi = _limits(m, styles[method]["signed"])
                ax.imshow(
                    m,
                    cmap=styles[method]["cmap"],
                    vmin=lo,
                    vmax=hi,
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


# --- writing --------------------------------------------------------------------------------------


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def save(fig, path_stem: Path, formats: Sequence[str] = FORMATS, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<format>`` for each format (atomically); returns the paths."""
    out = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        path = path_stem.with_name(f"{path_stem.name}.{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    return out


def figures(
    roots: Sequence[str | Path],
    n_images: int = 6,
    band: str = "iqr",
    from_cache: bool = False,
) -> dict[str, Any]:
    """Every figure the jobs under ``roots`` allow: name -> matplotlib Figure."""
    if band not in BANDS:
        raise ValueError(f"band={band!r} is not valid; accepted: {', '.join(BANDS)}.")
    jobs, collation = load_jobs(roots)
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
) -> list[Path]:
    """Write every figure the completed jobs under ``roots`` allow into ``out_dir`` as PNG and PDF
    (see the module's docstring for the list); returns the files written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for name, fig in figures(roots, n_images, band, from_cache).items():
        written += save(fig, out_dir / name, formats)
    return written
