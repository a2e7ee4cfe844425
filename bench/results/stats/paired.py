"""Paired comparisons over the same images: Wilcoxon with the rank-biserial effect, Friedman
with Kendall's W, Holm's correction, and the ``better`` method."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import ConfigError
from bench.results.stats.cells import _direction, usable
from bench.results.stats.intervals import few_images
from bench.results.stats.rows import ALPHA, MIN_IMAGES, PAIR_KEYS, check_rows


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979) of one family: sorted ascending, the i-th
    (0-based) of m becomes ``max_{j<=i} min(1, (m - j) p_(j))``. NaNs stay NaN and are not
    counted in m. Returns an array in the input order."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def _side(rows: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    """``PAIR_KEYS`` and ``value`` of one method's usable rows of one metric (one per image)."""
    side = rows[rows["method"] == method][[*PAIR_KEYS, "value"]]
    if side.duplicated(PAIR_KEYS).any():
        raise ConfigError(
            f"method={method} metric={metric} has several rows for one image; accepted: one "
            "row per (model, dataset, image_id, target) and method (collate() gives that)."
        )
    return side


def paired_values(df: pd.DataFrame, method_a: str, method_b: str, metric: str) -> pd.DataFrame:
    """The scores of ``method_a`` and ``method_b`` on ``metric`` for the same images (joined on
    ``PAIR_KEYS``; flagged and NaN rows left out). Returns ``PAIR_KEYS`` plus ``a`` and ``b``."""
    check_rows(df)
    rows = usable(df[df["metric"] == metric])
    a = _side(rows, method_a, metric).rename(columns={"value": "a"})
    b = _side(rows, method_b, metric).rename(columns={"value": "b"})
    return a.merge(b, on=PAIR_KEYS, how="inner")


def paired_test(
    df: pd.DataFrame, method_a: str, method_b: str, metric: str, min_pairs: int = 2
) -> dict[str, Any]:
    """Wilcoxon signed-rank test (Wilcoxon 1945; ``scipy.stats.wilcoxon``, two-sided, zero
    differences dropped) of ``method_a`` against ``method_b`` on ``metric`` over the images both
    scored (:func:`paired_values`).

    Returns a dict: ``metric, method_a, method_b, n_pairs, n_nonzero, mean_a, mean_b,
    median_diff`` and ``mean_diff`` (a - b, over all pairs), ``rank_biserial`` (the matched-pairs
    rank-biserial correlation over the non-zero differences, (R+ - R-) / (R+ + R-), in [-1, 1],
    positive when a scores higher), ``statistic``, ``p`` and ``note``. With fewer than
    ``min_pairs`` non-zero differences (none at all, or every difference zero) ``p`` and the
    statistic are NaN and ``note`` says why; this never raises for small or tied data."""
    if method_a == method_b:
        raise ConfigError(f"method_a={method_a} equals method_b; accepted: two different methods.")
    pairs = paired_values(df, method_a, method_b, metric)
    return _test(pairs["a"], pairs["b"], metric, method_a, method_b, min_pairs)


def _test(
    a: pd.Series, b: pd.Series, metric: str, method_a: str, method_b: str, min_pairs: int
) -> dict[str, Any]:
    """:func:`paired_test` of the paired scores ``a`` and ``b`` (one per image, in order)."""
    from scipy import stats

    d = (a - b).to_numpy(dtype=float)
    nz = d[d != 0]
    out: dict[str, Any] = dict(
        metric=metric,
        method_a=method_a,
        method_b=method_b,
        n_pairs=len(d),
        n_nonzero=len(nz),
        mean_a=float(a.mean()) if len(d) else float("nan"),
        mean_b=float(b.mean()) if len(d) else float("nan"),
        median_diff=float(np.median(d)) if len(d) else float("nan"),
        mean_diff=float(d.mean()) if len(d) else float("nan"),
        rank_biserial=float("nan"),
        statistic=float("nan"),
        p=float("nan"),
        note="",
    )
    if len(d) == 0:
        out["note"] = "no image scored by both methods"
        return out
    if len(nz) == 0:
        out["note"] = "every paired difference is zero"
        return out
    ranks = stats.rankdata(np.abs(nz))
    r_plus, r_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
    out["rank_biserial"] = float((r_plus - r_minus) / (r_plus + r_minus))
    if len(nz) < min_pairs:
        out["note"] = f"{len(nz)} non-zero difference(s): too few to test"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.wilcoxon(nz, zero_method="wilcox", alternative="two-sided")
    out.update(statistic=float(res.statistic), p=float(res.pvalue))
    if len(nz) < 6:
        out["note"] = f"{len(nz)} non-zero differences: p cannot fall below 0.05"
    return out


def better_of(r: Mapping[str, Any], direction: str, alpha: float = ALPHA) -> str:
    """The ``better`` column of a pairwise test ``r``: the method the metric's direction favours
    where the Holm-corrected p is below ``alpha``, by the sign of the test's statistic (the
    rank-biserial correlation, positive when ``method_a`` scores higher); "" (tied) everywhere
    else: not significant, untested, or a descriptive metric."""
    p, eff = r.get("p_holm", float("nan")), r.get("rank_biserial", float("nan"))
    if direction not in ("higher", "lower") or not (np.isfinite(p) and p < alpha):
        return ""
    if not np.isfinite(eff) or eff == 0:
        return ""
    return r["method_a"] if (eff > 0) == (direction == "higher") else r["method_b"]


def pairwise_tests(df: pd.DataFrame, min_pairs: int = 2, alpha: float = ALPHA) -> pd.DataFrame:
    """:func:`paired_test` for every pair of methods of every (model, dataset, metric), with
    ``p_holm`` Holm-corrected within each (model, dataset, metric) (Holm 1979; the post-hoc
    tests of :func:`friedman_tests`) and ``better`` (:func:`better_of` at ``alpha``). Returns one
    row per pair with ``model, dataset, direction`` and the test's fields; ``note`` warns where
    fewer than :data:`MIN_IMAGES` images were paired."""
    check_rows(df)
    cols = [
        "model", "dataset", "metric", "direction", "method_a", "method_b", "n_pairs", "n_nonzero",
        "mean_a", "mean_b", "median_diff", "mean_diff", "rank_biserial", "statistic", "p",
        "p_holm", "better", "note",
    ]  # fmt: skip
    out = []
    for (model, dataset, metric), g in df.groupby(["model", "dataset", "metric"], sort=True):
        direction = _direction(g)
        family = []
        rows = usable(g)
        methods = sorted(g["method"].unique())
        # each method's scores by image, once; a pair is the left method's images that the
        # right one scored too, in the left one's order (paired_values' inner join)
        sides = {m: _side(rows, m, metric).set_index(PAIR_KEYS)["value"] for m in methods}
        for a, b in itertools.combinations(methods, 2):
            left = sides[a][sides[a].index.isin(sides[b].index)]
            right = sides[b].reindex(left.index)
            r = _test(left.reset_index(drop=True), right.reset_index(drop=True), metric, a, b,
                      min_pairs)  # fmt: skip
            r.update(model=model, dataset=dataset, direction=direction)
            if 0 < r["n_pairs"] < MIN_IMAGES:
                r["note"] = "; ".join(filter(None, [few_images(r["n_pairs"]), r["note"]]))
            family.append(r)
        for r, ph in zip(family, holm([r["p"] for r in family])):
            r["p_holm"] = float(ph)
            r["better"] = better_of(r, direction, alpha)
        out += family
    return pd.DataFrame(out, columns=cols)


def complete_blocks(g: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The methods of one (model, dataset, metric)'s rows ``g``, sorted, and their scores
    ``[n, k]`` on the images every method scored (complete blocks; flagged and NaN rows left
    out), one row per image in ``PAIR_KEYS`` order."""
    methods = sorted(g["method"].unique())
    wide = usable(g).pivot_table(index=PAIR_KEYS, columns="method", values="value", aggfunc="first")
    return methods, wide.reindex(columns=methods).dropna().to_numpy(dtype=float)


def friedman_tests(df: pd.DataFrame) -> pd.DataFrame:
    """Friedman's test (Friedman 1937; ``scipy.stats.friedmanchisquare``) over all methods of
    each (model, dataset, metric), on the images every method scored (complete blocks).

    Returns ``model, dataset, metric, direction, k`` (methods), ``n_blocks, statistic, p,
    kendall_w`` (chi2 / (n (k - 1)), the agreement of the images' rankings, in [0, 1]),
    ``mean_ranks`` (per-image ranks averaged, 1 = best by the metric's direction; "a=1.2; b=1.8")
    and ``note``; the test is NaN with a note when k < 3 (see the pairwise test), n < 2 or every
    image ties all methods."""
    from scipy import stats

    check_rows(df)
    cols = [
        "model", "dataset", "metric", "direction", "k", "n_blocks", "statistic", "p",
        "kendall_w", "mean_ranks", "note",
    ]  # fmt: skip
    out = []
    for (model, dataset, metric), g in df.groupby(["model", "dataset", "metric"], sort=True):
        direction = _direction(g)
        methods, x = complete_blocks(g)
        k, n = len(methods), len(x)
        r: dict[str, Any] = dict(
            model=model, dataset=dataset, metric=metric, direction=direction, k=k, n_blocks=n,
            statistic=float("nan"), p=float("nan"), kendall_w=float("nan"), mean_ranks="",
            note="",
        )  # fmt: skip
        if n:
            signed = -x if direction == "higher" else x
            avg = stats.rankdata(signed, axis=1).mean(axis=0)
            r["mean_ranks"] = "; ".join(f"{m}={v:.2f}" for m, v in zip(methods, avg))
        if k < 3:
            r["note"] = f"{k} method(s): Friedman needs 3 or more; see the pairwise tests"
        elif n < 2:
            r["note"] = f"{n} image(s) scored by every method: too few to test"
        elif np.all(x == x[:, :1]):
            r["note"] = "every image ties all methods"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = stats.friedmanchisquare(*x.T)
            r.update(statistic=float(res.statistic), p=float(res.pvalue))
            if np.isfinite(r["statistic"]):
                r["kendall_w"] = float(r["statistic"] / (n * (k - 1)))
        out.append(r)
    return pd.DataFrame(out, columns=cols)
