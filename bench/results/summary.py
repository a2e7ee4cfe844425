"""The summary of collated jobs: one row per (model, dataset, method, metric) with its mean and
95% interval (:func:`summarise`), as a Markdown table (:func:`format_table`) and a bar chart
(:func:`plot`), written beside the collated rows by
:func:`bench.results.collate.write_summary`. Re-exported by :mod:`bench.results.collate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.engine.io import atomic_write_bytes
from bench.results import stats

#: The columns a summary row is keyed by.
GROUP = ["model", "dataset", "method", "metric"]
#: How a direction is shown in table headers and figure titles.
ARROWS = {"higher": "↑", "lower": "↓", "none": ""}
_HIGHER = {"higher": True, "lower": False}


def summarise(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per (model, dataset, method, metric): n, mean and the interval of
    :func:`bench.results.stats.cell_table` (the 95% BCa bootstrap over images, clipped to the
    score's range; ``ci_method``), direction, the rows ``excluded`` because their map was
    non-finite or constant (``MAP_FLAGS``), ``note`` (a warning below
    :data:`bench.results.stats.MIN_IMAGES` images) and, for metrics whose protocol averages over
    classes (pointing game), the unweighted class mean. NaN scores are never averaged: ``n``
    counts the finite ones."""
    cells = stats.cell_table(df, GROUP, level=level)
    if cells.empty:
        return pd.DataFrame()
    out = cells.rename(columns={"flagged": "excluded"})
    out["higher_is_better"] = out["direction"].map(_HIGHER)
    cols = [*GROUP, "n", "mean", "ci_low", "ci_high", "ci_method", "higher_is_better"]
    out = out[[*cols, "direction", "excluded", "note"]]
    protocol = stats.class_means(df)
    if not protocol.empty:
        protocol = protocol[[*GROUP, "classes_scored", "class_mean"]]
        out = out.merge(protocol, on=GROUP, how="left")
    return out


def format_table(
    summary: pd.DataFrame, metrics: Sequence[str] | None = None, ci: bool = True
) -> str:
    """A Markdown table: one row per (model, dataset, method), a column per metric,
    ``mean [low, high]`` (:func:`bench.results.stats.interval_text`), then a warning line where a
    cell rests on fewer than :data:`bench.results.stats.MIN_IMAGES` images.

    ``metrics`` picks and orders the columns (``road_abc``, ``model_randomisation_cascading.ssim``);
    ``ci=False`` prints means only (paper tables that state n once). A cell with no score is ``—``.
    """
    if summary.empty:
        return "(no completed jobs)"
    if metrics is not None:
        unknown = [m for m in metrics if m not in set(summary["metric"])]
        if unknown:
            raise ValueError(
                f"metric column(s) {', '.join(unknown)} not in the collated jobs; "
                f"accepted: {', '.join(sorted(summary['metric'].unique()))}."
            )
        summary = summary[summary["metric"].isin(metrics)]

    def cell(r: pd.Series) -> str:
        nan = float("nan")
        return stats.interval_text(r["mean"], *((r["ci_low"], r["ci_high"]) if ci else (nan, nan)))

    arrows = summary.groupby("metric")["direction"].first().map(ARROWS)
    table = summary.assign(cell=summary.apply(cell, axis=1)).pivot_table(
        index=["model", "dataset", "method"], columns="metric", values="cell", aggfunc="first"
    )
    if metrics is not None:
        table = table[list(metrics)]
    table = table.fillna("—")
    table.columns = [f"{c} {arrows[c]}".rstrip() for c in table.columns]
    by_cell = summary.groupby(["model", "dataset", "method"])
    table.insert(0, "n", by_cell["n"].max())
    if "excluded" in summary and summary["excluded"].any():  # maps no metric could score
        table.insert(1, "excluded", by_cell["excluded"].max())
    table = table.reset_index()
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, sep] + [
        "| " + " | ".join(map(str, r)) + " |" for r in table.itertuples(index=False)
    ]
    few = summary[(summary["n"] > 0) & (summary["n"] < stats.MIN_IMAGES)]
    if len(few):
        lines += [
            "",
            f"WARNING: {len(few)} cell(s) rest on fewer than {stats.MIN_IMAGES} images (n = "
            f"{', '.join(map(str, sorted(set(few['n']))))}): their intervals and any test on "
            "them are unreliable.",
        ]
    return "\n".join(lines)


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Bar chart per metric: each method's mean with its 95% CI."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted(summary["metric"].unique())
    bars = int(summary.groupby("metric").size().max())
    ncols = min(len(metrics), 4 if bars <= 8 else 3 if bars <= 16 else 2)
    nrows = -(-len(metrics) // ncols)
    width = max(3.6, 0.24 * bars + 1.0)  # room for one rotated label per bar
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        s = summary[summary["metric"] == metric]
        labels = [
            f"{m}\n{mo}" if summary["model"].nunique() > 1 else m
            for m, mo in zip(s["method"], s["model"])
        ]
        err = np.stack([s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]]).clip(min=0)
        ax.bar(range(len(s)), s["mean"], yerr=np.nan_to_num(err), capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(s)), labels, rotation=45, ha="right", fontsize=8)
        arrow = {"higher": "↑ higher is better", "lower": "↓ lower is better"}.get(
            s["direction"].iloc[0], "descriptive"
        )
        ax.set_title(f"{metric}\n({arrow})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
