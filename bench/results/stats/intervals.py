"""Score ranges and the seeded bootstrap interval of a mean (per cell, or per step of a curve),
clipped to the range the metric class declares."""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import ConfigError
from bench.results.stats.rows import MIN_IMAGES, Range


def metric_key(metric: str) -> str:
    """The score key a row's ``metric`` names, without a variant label: ``deletion[step=112]``
    gives ``deletion``, ``road_abc[...].probability`` gives ``road_abc.probability``."""
    return re.sub(r"\[.*\]", "", str(metric))


@functools.cache
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
    ``n_resamples=0``: the mean alone (no interval, ``ci_method`` empty), for callers that show
    means only.
    """
    if method not in ("BCa", "percentile"):
        raise ConfigError(f"method={method!r} is not valid; accepted: BCa, percentile.")
    raw = np.asarray(values, dtype=float)
    raw = raw[~np.isnan(raw)]
    v = np.sort(raw)  # the interval of the values, not of their order
    out: dict[str, Any] = dict(
        n=len(v), mean=float("nan"), ci_low=float("nan"), ci_high=float("nan"), ci_method=""
    )
    out["note"] = ""
    if len(v) == 0:
        out["note"] = "no finite value"
        return out
    out["mean"] = float(raw.mean())  # summed in the rows' order, as every mean of the tables
    if n_resamples == 0:
        return out
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
