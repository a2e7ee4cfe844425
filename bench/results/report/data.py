"""What a report shows, computed once from finished jobs through the results code the tables use:
the collation, the cells of ``table.csv``, the paired tests, ranks, curves, saliency maps,
per-class results, throughput and every problem met on the way."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.core.errors import first_line
from bench.engine.io import MAP_FLAGS
from bench.engine.record import Record
from bench.results import stats
from bench.results.collate import Collation
from bench.results.figure_base import Job, Loaded, load_jobs
from bench.results.figure_curves import CurveSet, curve_sets
from bench.results.figures import saliency_grids
from bench.results.papers import throughput

log = logging.getLogger("bench.results.report")

#: Rows of the saliency grid per (model, dataset).
N_IMAGES = 4


@dataclass
class Study:
    """Everything one report shows (see the module docstring); tables keyed like the paper tables
    of :func:`bench.results.papers.write_paper_tables` and equal to them (``per_class``: their
    means and image counts, without the intervals the page does not show)."""

    roots: list[Path]
    collation: Collation
    jobs: list[Job]
    records: dict[str, Record]
    cells: pd.DataFrame
    pairs: pd.DataFrame
    friedman: pd.DataFrame
    avg_ranks: pd.DataFrame
    ranks: pd.DataFrame
    agreement: pd.DataFrame
    per_class: pd.DataFrame
    class_means: pd.DataFrame
    throughput: pd.DataFrame
    curves: list[CurveSet]
    grids: dict[tuple[str, str], dict[str, Any]]
    command: str
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %z"))
    #: Problems met while gathering (a saliency grid that could not be read, ...).
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> pd.DataFrame:
        return self.collation.rows


def gather(
    roots: Sequence[str | Path],
    n_images: int = N_IMAGES,
    from_cache: bool = True,
    loaded: Loaded | None = None,
) -> Study:
    """The :class:`Study` of the jobs under ``roots`` (collated by
    :func:`bench.results.collate.collate`: a :class:`~bench.results.collate.CollateError` for a
    folder that cannot be trusted). The cells are :func:`bench.results.stats.cell_table` with the
    paper tables' grouping, score ranges and bootstrap settings, so they equal ``table.csv``.
    ``loaded``: the jobs and collation of ``roots`` when the caller has them already."""
    roots = [Path(r) for r in roots]
    jobs, collation = loaded if loaded is not None else load_jobs(roots)
    rows = collation.rows
    records = {str(j.path): j.record for j in jobs}
    notes: list[str] = []
    empty = pd.DataFrame()
    cells = pairs = friedman = avg = ranks = agree = per_class = means = thr = empty
    if not rows.empty:
        ranges = stats.score_ranges(r.to_dict() for r in records.values())
        cells = stats.cell_table(rows, ["model", "dataset", "method", "metric"], ranges)
        pairs = stats.pairwise_tests(rows)
        cells["tied_best"] = stats.tied_best(cells, pairs)
        friedman = stats.friedman_tests(rows)
        avg = stats.average_ranks(rows)
        ranks = stats.rank_methods(cells)
        agree = stats.rank_agreement(ranks)
        per_class = stats.class_cells(rows, ranges, n_resamples=0)  # shown: means and n only
        means = stats.class_means(rows)
        thr = throughput(records, rows)
    grids: dict[tuple[str, str], dict[str, Any]] = {}
    if jobs:
        try:
            grids = saliency_grids(jobs, n_images, from_cache)
        except Exception as err:  # noqa: BLE001 - a grid never stops the report
            notes.append(f"saliency grid not drawn: {type(err).__name__}: {first_line(err)}")
    return Study(
        roots=roots,
        collation=collation,
        jobs=jobs,
        records=records,
        cells=cells,
        pairs=pairs,
        friedman=friedman,
        avg_ranks=avg,
        ranks=ranks,
        agreement=agree,
        per_class=per_class,
        class_means=means,
        throughput=thr,
        curves=curve_sets(jobs),
        grids=grids,
        command=command_of(roots, jobs),
        notes=notes,
    )


def command_of(roots: Sequence[Path], jobs: Sequence[Job]) -> str:
    """The command line that made the run: a sweep's (``multirun.yaml``: ``bench -m`` and its
    overrides), else each job's own (``.hydra/overrides.yaml``), one per line; "" if unknown."""
    lines = []
    for root in roots:
        args = _overrides(root / "multirun.yaml")
        if args is not None:
            lines.append("bench -m " + " ".join(args))
    if lines:
        return "\n".join(dict.fromkeys(lines))
    for job in jobs:
        args = _overrides(job.path / ".hydra" / "overrides.yaml")
        if args is not None:
            lines.append("bench " + " ".join(args))
    return "\n".join(dict.fromkeys(lines))


def _overrides(path: Path) -> list[str] | None:
    """The command-line overrides Hydra kept in ``path`` (a sweep's ``multirun.yaml`` or a job's
    ``overrides.yaml``), or None."""
    if not path.is_file():
        return None
    try:
        node = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if isinstance(node, list):
        return [str(a) for a in node]
    over = ((node or {}).get("hydra") or {}).get("overrides") or {}
    return [str(a) for a in [*(over.get("task") or []), *(over.get("hydra") or [])]]


def flagged_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with a flag (a map that was non-finite or constant, a degenerate or NaN score):
    ``model, dataset, method, image_id, metric, flag, value`` and ``excluded`` (left out of the
    means: a map flag, or no finite value)."""
    cols = ["model", "dataset", "method", "image_id", "metric", "flag", "value"]
    if rows.empty or "flag" not in rows:
        return pd.DataFrame(columns=[*cols, "excluded"])
    out = rows.loc[rows["flag"].fillna("").astype(str) != "", cols].copy()
    value = pd.to_numeric(out["value"], errors="coerce").to_numpy(dtype=float)
    out["excluded"] = out["flag"].isin(MAP_FLAGS) | ~np.isfinite(value)
    return out.sort_values(cols[:5]).reset_index(drop=True)
