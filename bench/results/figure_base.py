"""What every figure of :mod:`bench.results.figures` starts from: the completed jobs as the figures
see them (:class:`Job`, :func:`load_jobs`), the drawing helpers (a figure not registered with
pyplot, one style per method, one legend below the panels) and :func:`save`."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.engine.io import MAP_FLAGS, MAPS, atomic_write_bytes
from bench.engine.record import MetricInfo, Record, read_record
from bench.results.collate import Collation, collate

FORMATS = ("png", "pdf")


@dataclass
class Job:
    """One completed job as the figures see it: where, its record, its collated labels."""

    path: Path
    record: Record
    model: str
    dataset: str
    method: str  #: the collated method label (names what differs between jobs sharing a name)
    metric_labels: dict[str, str] = field(default_factory=dict)  #: base metric -> collated label
    excluded: set[str] = field(default_factory=set)  #: ids of flagged maps (left out of means)

    @property
    def group(self) -> tuple[str, str]:
        return self.model, self.dataset

    def info(self, metric: str) -> MetricInfo:
        return self.record.metric_info(metric)

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
        size = (self.record.model or {}).get("input_size")
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


#: Completed jobs and the collation they come from (what :func:`load_jobs` returns).
Loaded = tuple[list["Job"], Collation]


def load_jobs(roots: Sequence[str | Path]) -> Loaded:
    """The completed jobs under ``roots`` (see :func:`bench.results.collate.collate`) and the collation."""
    collation = collate(roots)
    return jobs_of(collation), collation


def jobs_of(collation: Collation) -> list[Job]:
    """The completed jobs of a collation, each with its record and labels."""
    jobs: list[Job] = []
    rows = collation.rows
    if rows.empty:
        return jobs
    for job, g in rows.groupby("job", sort=True):
        record = read_record(Path(job))
        names = list(record.metrics or {})
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
    return jobs


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
