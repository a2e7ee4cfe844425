"""The statistics of every number the tool prints or draws: pure functions over the long rows of
:func:`bench.results.collate.collate` (the console table, ``summary.*``, the paper tables, the
figures and the report all come through here; there is no other interval or test).

Every function takes a DataFrame with the columns ``model, dataset, method, metric, image_id,
target, value`` (and, where present, ``flag``, ``direction``, ``aggregate``) and returns a new
DataFrame; nothing here reads or writes files.

* :func:`bootstrap_ci` / :func:`cell_table` — the mean over images with a seeded 95% bootstrap
  interval (Efron 1979; BCa, Efron 1987, by ``scipy.stats.bootstrap``), clipped to the score's
  range the metric class declares (:meth:`bench.metrics.base.Metric.range_of`, carried by the
  rows); flagged and NaN rows counted, not averaged; :func:`curve_band` the same interval per
  step of a curve.
* :func:`rank_methods`, :func:`mean_ranks`, :func:`rank_agreement` — direction-aware ranks of
  methods per metric (1 = best, ties averaged) and Kendall's tau between metrics over methods.
* :func:`paired_test`, :func:`pairwise_tests`, :func:`friedman_tests`, :func:`holm` — paired
  comparisons over the same images: Wilcoxon signed-rank (Wilcoxon 1945) with the matched-pairs
  rank-biserial correlation, Friedman's test (Friedman 1937) with Kendall's W, Holm's step-down
  correction (Holm 1979); a ``better`` method only where the corrected p is below
  :data:`ALPHA`.

Cells on fewer than :data:`MIN_IMAGES` images and rank agreements over fewer than
:data:`MIN_METHODS` methods carry a warning in their ``note``.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import ConfigError
from bench.engine.io import MAP_FLAGS

#: What a paired observation is: the same image (and explained class) of one model and dataset.
PAIR_KEYS = ["model", "dataset", "image_id", "target"]
#: The columns every function here needs.
NEEDED = ["model", "dataset", "method", "metric", "image_id", "target", "value"]

#: The fewest images a cell's interval and tests should rest on, and the fewest methods a rank
#: agreement should: below them the tables say so in a visible warning.
MIN_IMAGES = 10
MIN_METHODS = 4
#: The level below which a Holm-corrected p names a ``better`` method.
ALPHA = 0.05

Range = tuple[float | None, float | None]


def check_rows(df: pd.DataFrame, needed: Sequence[str] = NEEDED) -> None:
    """Raise a one-line :class:`ConfigError` when ``df`` lacks a column the statistics need."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(
            f"rows have no column(s) {', '.join(missing)}; accepted: the long rows of "
            f"bench.results.collate.collate(...).rows ({', '.join(needed)})."
        )


def metric_key(metric: str) -> str:
    """The score key a row's ``metric`` names, without a variant label: ``deletion[step=112]``
    gives ``deletion``, ``road_abc[...].probability`` gives ``road_abc.probability``."""
    return re.sub(r"\[.*\]", "", str(metric))


def _metric_class(name: str) -> type | None:
    """The metric class of this package called ``name`` (a record's ``metrics.<m>.class``)."""
    import importlib
    import pkgutil

    import bench.metrics
    from bench.metrics.base import Metric

    for info in pkgutil.iter_modules(bench.metrics.__path__):
        importlib.import_module(f"bench.metrics.{info.name}")
    todo, seen = [Metric], {}
    while todo:
        cls = todo.pop()
        seen.setdefault(cls.__name__, cls)
        todo += cls.__subclasses__()
    cls = seen.get(name)
    return cls if cls is not None and cls.__module__.startswith("bench.metrics.") else None


def metric_range(info: Mapping[str, Any], key: str = "") -> Range | None:
    """The range ``(low, high)`` (``None`` on an open side) of score ``key`` (``""`` = the
    metric's own) of the metric a job record describes (``metrics.<name>``): what the metric class
    declared when the job ran (``ranges``), else what this release's class of that name declares
    for the recorded settings (:meth:`bench.metrics.base.Metric.range_of`; records written before
    ranges were recorded); ``None`` when unbounded or unknown."""
    declared = info.get("ranges")
    if isinstance(declared, Mapping):
        r = declared.get(key)
        return (r[0], r[1]) if isinstance(r, (list, tuple)) and len(r) == 2 else None
    cls = _metric_class(str(info.get("class", "")))
    return None if cls is None else cls.range_of(key, info.get("settings") or {})


def score_ranges(records: Iterable[Mapping[str, Any]] = ()) -> dict[str, Range]:
    """The range of every score key of the jobs' metrics (:func:`metric_range`), by the row's
    metric name (``deletion``, ``pointing_game.difficult``). Returns a dict; keys with no known
    range, or whose jobs disagree, are absent (unbounded)."""
    seen: dict[str, set] = {}
    for record in records:
        for name, info in (record.get("metrics") or {}).items():
            info = info or {}
            keys = set(info.get("directions") or {}) | set(info.get("ranges") or {}) | {""}
            for key in keys:
                seen.setdefault(f"{name}.{key}" if key else name, set()).add(
                    metric_range(info, key)
                )
    return {k: v.pop() for k, v in seen.items() if len(v) == 1 and None not in v}


def _row_range(g: pd.DataFrame) -> Range | None:
    """The range the rows carry (``range_low``/``range_high``, NaN on an open side)."""
    if "range_low" not in g or not len(g):
        return None
    lo, hi = (pd.to_numeric(g[c], errors="coerce") for c in ("range_low", "range_high"))
    if lo.nunique(dropna=False) > 1 or hi.nunique(dropna=False) > 1:
        return None  # rows that disagree: no range is safe
    lo, hi = lo.iloc[0], hi.iloc[0]
    if np.isnan(lo) and np.isnan(hi):
        return None
    return (None if np.isnan(lo) else float(lo), None if np.isnan(hi) else float(hi))


def interval_text(mean: float, low: float, high: float, digits: int = 3, dash: str = "—") -> str:
    """A cell as every table prints it: ``mean [low, high]`` (``mean`` alone without an interval;
    ``dash`` without a mean)."""
    if not np.isfinite(mean):
        return dash
    text = f"{mean:.{digits}f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def few_images(n: int) -> str:
    """The warning shown beside a cell (or test) that rests on ``n`` < :data:`MIN_IMAGES` images."""
    return f"only {n} image(s): the interval and tests are unreliable below {MIN_IMAGES}"


def _clip(x: float, rng: Range | None) -> float:
    if rng is None or not math.isfinite(x):
        return x
    lo, hi = rng
    if lo is not None:
        x = max(x, float(lo))
    if hi is not None:
        x = min(x, float(hi))
    return x


def bootstrap_batch(n: int, n_resamples: int) -> int | None:
    """The ``batch`` passed to ``scipy.stats.bootstrap`` for ``n`` values: ``None`` (all at once)
    while the resamples fit in about 16 MB, else the number that do (memory ``O(batch * n)``)."""
    fit = max(1, 2_000_000 // max(n, 1))
    return None if fit >= max(n_resamples, n) else fit


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    method: str = "BCa",
    score_range: Range | None = None,
) -> dict[str, Any]:
    """Mean of ``values`` (NaNs dropped) and its bootstrap interval by ``scipy.stats.bootstrap``
    (``method`` ``BCa`` or ``percentile``; ``rng=np.random.default_rng(seed)``) over the values
    sorted, so that the interval depends on the values and not on the order of the rows (jobs
    collated in another order, shards pooled).

    Returns a dict: ``n``, ``mean``, ``ci_low``, ``ci_high``, ``ci_method`` (the method used) and
    ``note``. The bounds are clipped to ``score_range`` (a percentile or BCa interval of a mean
    lies within the values anyway; the clip guards rounding; the mean itself is never changed). With one value the interval is
    NaN; with values all equal it is that value (every resample's mean is); when BCa cannot be
    computed (degenerate jackknife) the percentile interval is given and ``ci_method`` says so.
    """
    if method not in ("BCa", "percentile"):
        raise ConfigError(f"method={method!r} is not valid; accepted: BCa, percentile.")
    v = np.sort(np.asarray(values, dtype=float))  # the interval of the values, not of their order
    v = v[~np.isnan(v)]
    out: dict[str, Any] = dict(
        n=len(v), mean=float("nan"), ci_low=float("nan"), ci_high=float("nan"), ci_method=""
    )
    out["note"] = ""
    if len(v) == 0:
        out["note"] = "no finite value"
        return out
    out["mean"] = float(v.mean())
    if len(v) < 2:
        out["note"] = "one value: no interval"
        return out
    if np.all(v == v[0]):
        out.update(ci_low=out["mean"], ci_high=out["mean"], ci_method="constant")
        out["note"] = "all values equal"
        return out
    from scipy import stats

    used = method
    for m in dict.fromkeys([method, "percentile"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (v,),
                np.mean,
                n_resamples=n_resamples,
                batch=bootstrap_batch(len(v), n_resamples),
                confidence_level=level,
                method=m,
                rng=np.random.default_rng(seed),
                vectorized=True,
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        used = m
        if math.isfinite(lo) and math.isfinite(hi):
            break
    if used != method:
        out["note"] = f"{method} undefined for these values: percentile interval"
    out.update(ci_low=_clip(lo, score_range), ci_high=_clip(hi, score_range), ci_method=used)
    return out


def curve_band(
    curves: np.ndarray,
    level: float = 0.95,
    n_resamples: int = 999,
    seed: int = 0,
    method: str = "BCa",
    score_range: Range | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The interval of :func:`bootstrap_ci` at every step of the mean of ``curves`` ``[n, T]``
    (one row per image; rows with a non-finite value dropped), resampling whole curves (the
    images), clipped to ``score_range``: ``(low, high)`` arrays ``[T]``, or None with fewer than
    two curves. Fewer resamples than the tables by default: it is drawn, not printed."""
    from scipy import stats

    x = np.asarray(curves, dtype=float)
    x = x[np.isfinite(x).all(axis=1)] if x.ndim == 2 else x[:0]
    if len(x) < 2:
        return None
    mean = x.mean(axis=0)
    lo, hi = mean.copy(), mean.copy()
    varies = np.ptp(x, axis=0) > 0
    if varies.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (x[:, varies],),
                np.mean,
                axis=0,
                n_resamples=n_resamples,
                batch=bootstrap_batch(x[:, varies].size, n_resamples),
                confidence_level=level,
                method=method,
                rng=np.random.default_rng(seed),
                vectorized=True,
            )
        lo[varies], hi[varies] = res.confidence_interval.low, res.confidence_interval.high
        bad = ~(np.isfinite(lo) & np.isfinite(hi))
        lo[bad], hi[bad] = mean[bad], mean[bad]  # BCa undefined at a step: no band there
    if score_range is not None:
        lo = np.array([_clip(v, score_range) for v in lo])
        hi = np.array([_clip(v, score_range) for v in hi])
    return lo, hi


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


# --- ranks ----------------------------------------------------------------------------------------


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


# --- paired tests ---------------------------------------------------------------------------------


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


def paired_values(df: pd.DataFrame, method_a: str, method_b: str, metric: str) -> pd.DataFrame:
    """The scores of ``method_a`` and ``method_b`` on ``metric`` for the same images (joined on
    ``PAIR_KEYS``; flagged and NaN rows left out). Returns ``PAIR_KEYS`` plus ``a`` and ``b``."""
    check_rows(df)
    rows = usable(df[df["metric"] == metric])
    a = rows[rows["method"] == method_a][[*PAIR_KEYS, "value"]].rename(columns={"value": "a"})
    b = rows[rows["method"] == method_b][[*PAIR_KEYS, "value"]].rename(columns={"value": "b"})
    for side, name in ((a, method_a), (b, method_b)):
        if side.duplicated(PAIR_KEYS).any():
            raise ConfigError(
                f"method={name} metric={metric} has several rows for one image; accepted: one "
                "row per (model, dataset, image_id, target) and method (collate() gives that)."
            )
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
    from scipy import stats

    if method_a == method_b:
        raise ConfigError(f"method_a={method_a} equals method_b; accepted: two different methods.")
    pairs = paired_values(df, method_a, method_b, metric)
    d = (pairs["a"] - pairs["b"]).to_numpy(dtype=float)
    nz = d[d != 0]
    out: dict[str, Any] = dict(
        metric=metric,
        method_a=method_a,
        method_b=method_b,
        n_pairs=len(d),
        n_nonzero=len(nz),
        mean_a=float(pairs["a"].mean()) if len(d) else float("nan"),
        mean_b=float(pairs["b"].mean()) if len(d) else float("nan"),
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
        for a, b in itertools.combinations(sorted(g["method"].unique()), 2):
            r = paired_test(g, a, b, metric, min_pairs)
            r.update(model=model, dataset=dataset, direction=direction)
            if 0 < r["n_pairs"] < MIN_IMAGES:
                r["note"] = "; ".join(filter(None, [few_images(r["n_pairs"]), r["note"]]))
            family.append(r)
        for r, ph in zip(family, holm([r["p"] for r in family])):
            r["p_holm"] = float(ph)
            r["better"] = better_of(r, direction, alpha)
        out += family
    return pd.DataFrame(out, columns=cols)


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
        rows = usable(g)
        methods = sorted(g["method"].unique())
        wide = rows.pivot_table(index=PAIR_KEYS, columns="method", values="value", aggfunc="first")
        wide = wide.reindex(columns=methods).dropna()
        k, n = len(methods), len(wide)
        r: dict[str, Any] = dict(
            model=model, dataset=dataset, metric=metric, direction=direction, k=k, n_blocks=n,
            statistic=float("nan"), p=float("nan"), kendall_w=float("nan"), mean_ranks="",
            note="",
        )  # fmt: skip
        if n:
            x = wide.to_numpy(dtype=float)
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
