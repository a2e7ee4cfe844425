"""The rank agreement and throughput figures of :mod:`bench.results.figures`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.results import stats
from bench.results.figure_base import Job, _figure, _grid, _legend_below
from bench.results.summary import ARROWS


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
        timings = r.timings or {}
        wall = r.wall_seconds
        images = r.images_timed()  # the count the throughput table divides by too
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
        cache = r.cache or {}
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
    device = sorted({j.record.device_name() or "?" for j in jobs})
    fig.suptitle(f"Throughput (device: {', '.join(device)})", fontsize=10)
    return fig
