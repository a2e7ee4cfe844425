"""Direction-aware ranks of methods per metric and the agreement of ranks between metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from bench.results.stats.rows import MIN_METHODS


def rank_methods(cells: pd.DataFrame) -> pd.DataFrame:
    """Direction-aware ranks of methods per (model, dataset, metric) from a :func:`cell_table`
    (1 = best mean; ties get their average rank; descriptive metrics and NaN means left out).
    Returns ``model, dataset, metric, direction, method, mean, rank``."""
    rows = cells[cells["direction"].isin(["higher", "lower"]) & cells["mean"].notna()].copy()
    cols = ["model", "dataset", "metric", "direction", "method", "mean", "rank"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    signed = np.where(rows["direction"] == "higher", -rows["mean"], rows["mean"])
    rows["signed"] = signed
    rows["rank"] = rows.groupby(["model", "dataset", "metric"])["signed"].rank(method="average")
    return rows[cols].sort_values(["model", "dataset", "metric", "rank"]).reset_index(drop=True)


def mean_ranks(ranks: pd.DataFrame) -> pd.DataFrame:
    """Each method's mean rank over the metrics of its (model, dataset) (from
    :func:`rank_methods`). Returns ``model, dataset, method, mean_rank, metrics`` (how many)."""
    if ranks.empty:
        return pd.DataFrame(columns=["model", "dataset", "method", "mean_rank", "metrics"])
    out = (
        ranks.groupby(["model", "dataset", "method"])["rank"]
        .agg(mean_rank="mean", metrics="count")
        .reset_index()
    )
    return out.sort_values(["model", "dataset", "mean_rank", "method"]).reset_index(drop=True)


def rank_agreement(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau-b (``scipy.stats.kendalltau``) between the ranks two metrics give the
    methods both scored, per (model, dataset): +1 when they order the methods alike (both
    direction-aware). Returns ``model, dataset, metric_a, metric_b, tau, p, n_methods, note``,
    every ordered pair (the diagonal is 1); tau is NaN with fewer than 2 common methods or a
    constant ranking; ``note`` warns below :data:`MIN_METHODS` methods."""
    from scipy import stats

    out = []
    for (model, dataset), g in ranks.groupby(["model", "dataset"], sort=True):
        wide = g.pivot_table(index="method", columns="metric", values="rank")
        for a, b in itertools.product(wide.columns, repeat=2):
            both = wide[[a, b]].dropna() if a != b else wide[[a]].dropna()
            x = both[a].to_numpy()
            y = both[b].to_numpy() if a != b else x
            tau = p = float("nan")
            if len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
                res = stats.kendalltau(x, y)
                tau, p = float(res.statistic), float(res.pvalue)
            out.append(dict(model=model, dataset=dataset, metric_a=a, metric_b=b, tau=tau, p=p))
            out[-1].update(n_methods=len(x), note=few_methods(len(x)) if a != b else "")
    return pd.DataFrame(
        out, columns=["model", "dataset", "metric_a", "metric_b", "tau", "p", "n_methods", "note"]
    )


def few_methods(n: int) -> str:
    """The warning beside a rank agreement over ``n`` methods ("" from :data:`MIN_METHODS` on)."""
    if n >= MIN_METHODS:
        return ""
    return f"only {n} method(s): a rank agreement is unreliable below {MIN_METHODS}"
