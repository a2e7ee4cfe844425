"""What the report draws from the paired comparisons: the best and tied-best cells of each column
(by the pairwise tests), and the average ranks over images with Nemenyi's critical difference
for a critical-difference diagram (Demšar 2006)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.results.stats.cells import _direction
from bench.results.stats.paired import complete_blocks
from bench.results.stats.rows import ALPHA, check_rows


def tested(pairs: pd.DataFrame) -> pd.Series:
    """Which rows of :func:`~bench.results.stats.pairwise_tests` were tested: a finite
    Holm-corrected p, or paired values that are all equal (no difference to test). A bool Series
    on ``pairs.index``; an untested pair (too few images) shows no verdict."""
    return pairs["p_holm"].notna() | ((pairs["n_pairs"] > 0) & (pairs["n_nonzero"] == 0))


def tied_best(cells: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """For each cell of a :func:`~bench.results.stats.cell_table` (by model, dataset, method,
    metric) whether it ties the best of its column: not ``best`` itself, but not significantly
    different from a best method of its column by :func:`~bench.results.stats.pairwise_tests`
    (``better`` empty and the pair tested: a finite Holm-corrected p, or paired values that are
    all equal). Untested pairs (too few images) tie nothing. Returns a bool Series on
    ``cells.index``."""
    out = pd.Series(False, index=cells.index)
    if cells.empty or pairs.empty:
        return out
    key = ["model", "dataset", "metric"]
    tie = pairs[tested(pairs) & (pairs["better"].fillna("") == "")]
    ties: set[tuple[Any, ...]] = set()
    for r in tie[[*key, "method_a", "method_b"]].itertuples(index=False):
        ties.add((*r[:3], r[3], r[4]))
        ties.add((*r[:3], r[4], r[3]))
    for _, g in cells.groupby(key, sort=False):
        best = list(g.loc[g["best"], "method"])
        for i, r in g[~g["best"]].iterrows():
            k = (r["model"], r["dataset"], r["metric"])
            out[i] = any((*k, r["method"], b) in ties for b in best)
    return out


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of average ranks of ``k`` methods over ``n`` images
    (Demšar 2006, eq. 5): ``q_alpha * sqrt(k (k + 1) / (6 n))``, ``q_alpha`` the studentized
    range quantile over sqrt(2) (2.343 for k = 3 at 0.05). NaN for k < 2 or n < 1."""
    from scipy import stats

    if k < 2 or n < 1:
        return float("nan")
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


def average_ranks(df: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Per (model, dataset, metric) with a direction: each method's rank averaged over the
    images every method scored (1 = best, ties averaged; the ``mean_ranks`` of
    :func:`~bench.results.stats.friedman_tests`) and Nemenyi's :func:`critical_difference` at
    ``alpha``. Returns ``model, dataset, metric, direction, method, avg_rank, n_blocks, k, cd``."""
    from scipy import stats

    check_rows(df)
    cols = ["model", "dataset", "metric", "direction", "method", "avg_rank", "n_blocks", "k", "cd"]
    out = []
    for (model, dataset, metric), g in df.groupby(["model", "dataset", "metric"], sort=True):
        direction = _direction(g)
        if direction not in ("higher", "lower"):
            continue
        methods, x = complete_blocks(g)
        if not len(x):
            continue
        avg = stats.rankdata(-x if direction == "higher" else x, axis=1).mean(axis=0)
        cd = critical_difference(len(methods), len(x), alpha)
        for m, v in zip(methods, avg):
            out.append([model, dataset, metric, direction, m, float(v), len(x), len(methods), cd])
    return pd.DataFrame(out, columns=cols)
