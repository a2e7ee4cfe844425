"""The method x metric cells: usable rows, the mean and interval per cell, per-class means."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import ConfigError
from bench.engine.io import MAP_FLAGS
from bench.results.stats.intervals import _row_range, bootstrap_ci, few_images, metric_key
from bench.results.stats.rows import MIN_IMAGES, Range, check_rows


def _flags(df: pd.DataFrame) -> pd.Series:
    if "flag" not in df:
        return pd.Series(False, index=df.index)
    return df["flag"].fillna("").astype(str).isin(MAP_FLAGS)


def _direction(g: pd.DataFrame) -> str:
    if "direction" in g and len(g):
        return str(g["direction"].iloc[0])
    if "higher_is_better" in g and len(g) and pd.notna(g["higher_is_better"].iloc[0]):
        return "higher" if bool(g["higher_is_better"].iloc[0]) else "lower"
    return "none"


def usable(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that enter means and tests: not flagged (``MAP_FLAGS``) and a finite value."""
    v = pd.to_numeric(df["value"], errors="coerce")
    return df[~_flags(df) & np.isfinite(v)]


def cell_table(
    df: pd.DataFrame,
    by: Sequence[str] = ("model", "dataset", "method", "metric"),
    ranges: Mapping[str, Range] | None = None,
    level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    method: str = "BCa",
) -> pd.DataFrame:
    """One row per group of ``by`` (which must include ``metric``): ``direction``, ``n`` (finite
    scores averaged), ``flagged`` (rows whose map was non-finite or constant, ``MAP_FLAGS``),
    ``nan`` (other rows without a finite score), ``mean``, ``ci_low``, ``ci_high`` (see
    :func:`bootstrap_ci`, clipped to the range the rows carry (``range_low``/``range_high``,
    from the metric class, :func:`bench.results.collate.collate` adds them), else to ``ranges``
    by row metric name (:func:`score_ranges`)), ``ci_method``, ``note`` (with a warning where
    fewer than :data:`MIN_IMAGES` images were scored), and ``best``: True where the mean is the
    best of its column (same groups but ``method``; ties all best; False for descriptive
    metrics)."""
    by = list(by)
    check_rows(df, [*by, "value"])
    if "metric" not in by:
        raise ConfigError(f"by={by} is not valid; accepted: a grouping that includes metric.")
    ranges = {} if ranges is None else ranges
    out = []
    for key, g in df.groupby(by, sort=True, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        flagged = _flags(g)
        values = pd.to_numeric(g.loc[~flagged, "value"], errors="coerce").to_numpy(dtype=float)
        values = values.copy()
        values[~np.isfinite(values)] = np.nan
        rng = _row_range(g) or ranges.get(metric_key(row["metric"]))
        ci = bootstrap_ci(values, level, n_resamples, seed, method, rng)
        if 0 < ci["n"] < MIN_IMAGES:
            ci["note"] = "; ".join(filter(None, [few_images(ci["n"]), ci["note"]]))
        row.update(
            direction=_direction(g),
            n=ci["n"],
            flagged=int(flagged.sum()),
            nan=int(np.isnan(values).sum()),
            mean=ci["mean"],
            ci_low=ci["ci_low"],
            ci_high=ci["ci_high"],
            ci_method=ci["ci_method"],
            note=ci["note"],
        )
        out.append(row)
    cols = [*by, "direction", "n", "flagged", "nan", "mean", "ci_low", "ci_high", "ci_method"]
    table = pd.DataFrame(out, columns=[*cols, "note"])
    table["best"] = False
    column = [c for c in by if c != "method"]
    if "method" in by and len(table):
        for _, g in table.groupby(column, sort=False, dropna=False):
            d = g["direction"].iloc[0]
            if d not in ("higher", "lower") or g["mean"].isna().all():
                continue
            best = g["mean"].max() if d == "higher" else g["mean"].min()
            table.loc[g.index[np.isclose(g["mean"], best, rtol=0, atol=1e-12)], "best"] = True
    return table


def class_cells(
    df: pd.DataFrame, ranges: Mapping[str, Range] | None = None, **kwargs: Any
) -> pd.DataFrame:
    """:func:`cell_table` per class (``target``) for the metrics whose protocol averages over
    classes (``aggregate == "class_mean"``, the pointing game); empty when there are none."""
    if "aggregate" not in df:
        return cell_table(df.iloc[0:0], ("model", "dataset", "metric", "target", "method"))
    sub = df[df["aggregate"].fillna("").astype(str) == "class_mean"]
    return cell_table(sub, ("model", "dataset", "metric", "target", "method"), ranges, **kwargs)


def class_means(df: pd.DataFrame) -> pd.DataFrame:
    """The protocol's score of metrics that average per class (``aggregate == "class_mean"``,
    TorchRay's pointing game): per (model, dataset, metric, method) the unweighted mean of the
    per-class means, a class of the dataset (``num_classes``) with no scored pair counting 0, as
    :func:`bench.results.collate.summarise`. Returns ``model, dataset, metric, method, classes_scored,
    num_classes, class_mean``; empty when no metric aggregates so."""
    cols = ["model", "dataset", "metric", "method", "classes_scored", "num_classes", "class_mean"]
    if "aggregate" not in df:
        return pd.DataFrame(columns=cols)
    sub = usable(df[df["aggregate"].fillna("").astype(str) == "class_mean"])
    out = []
    for key, g in sub.groupby(["model", "dataset", "metric", "method"], sort=True):
        per_class = g.groupby("target")["value"].mean()
        k = int(g["num_classes"].max()) if "num_classes" in g else 0
        k = max(k, len(per_class))
        out.append([*key, len(per_class), k, float(per_class.sum() / k)])
    return pd.DataFrame(out, columns=cols)
