"""Tables for papers: the statistics of :mod:`bench.results.stats` written as CSV, Markdown and LaTeX.

    from bench.results.collate import collate
    from bench.results.papers import write_paper_tables
    written = write_paper_tables(collate(["results/sweeps/A", "results/sweeps/B"]), None, "paper/")

or ``bench-collate A B --out paper/`` (``--no-paper`` for the summary alone). What each file
holds is in :func:`write_paper_tables`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import ConfigError
from bench.engine.io import atomic_write_text
from bench.engine.record import Record, read_record
from bench.results import stats
from bench.results.collate import Collation

#: How a direction is shown in Markdown and LaTeX headers.
MD_ARROWS = {"higher": " ↑", "lower": " ↓"}
TEX_ARROWS = {"higher": r" $\uparrow$", "lower": r" $\downarrow$"}
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``grad_cam`` -> ``grad\\_cam``)."""
    return "".join(_TEX_SPECIAL.get(c, c) for c in str(text))


def slug(*parts: str) -> str:
    """A file-name-safe join of ``parts`` (``shapes_cnn``, ``shapes`` -> ``shapes_cnn_shapes``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(map(str, parts))).strip("-") or "x"


def markdown(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    """A Markdown (GitHub) table of ``df``'s columns; floats formatted with ``floats``, NaN as ``—``."""
    if df.empty:
        return "(none)"

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "—" if np.isnan(v) else floats.format(v)
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(map(str, df.columns)) + " |",
        "|" + "|".join("---" for _ in df.columns) + "|",
    ]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


def _cell_text(r: pd.Series, digits: int, dash: str) -> str:
    return stats.interval_text(r["mean"], r["ci_low"], r["ci_high"], digits, dash)


def wide_table(
    cells: pd.DataFrame, digits: int = 3, dash: str = "—"
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The method × metric table of one (model, dataset) from :func:`bench.results.stats.cell_table`.

    Returns ``(table, best, directions)``: ``table`` has a ``method`` column, ``n`` (images
    scored; ``lo–hi`` when the metrics differ), ``excluded`` (rows flagged or NaN, the most of
    any metric) and one text column per metric, ``mean [low, high]``; ``best`` is a same-shaped
    bool frame marking the best cell of each column; ``directions`` maps metric -> direction."""
    metrics = sorted(cells["metric"].unique())
    methods = sorted(cells["method"].unique())
    text = cells.assign(text=cells.apply(_cell_text, axis=1, digits=digits, dash=dash))
    table = text.pivot(index="method", columns="metric", values="text").reindex(
        index=methods, columns=metrics
    )
    best = cells.pivot(index="method", columns="metric", values="best").reindex(
        index=methods, columns=metrics
    )
    table = table.fillna(dash)
    best = best.fillna(False).astype(bool)
    by = cells.groupby("method")
    n_lo, n_hi = by["n"].min().reindex(methods), by["n"].max().reindex(methods)
    n = [str(hi) if lo == hi else f"{lo}–{hi}" for lo, hi in zip(n_lo, n_hi)]
    excluded = (cells["flagged"] + cells["nan"]).groupby(cells["method"]).max().reindex(methods)
    table.insert(0, "excluded", excluded.astype(int).astype(str))
    table.insert(0, "n", n)
    best.insert(0, "excluded", False)
    best.insert(0, "n", False)
    table, best = table.reset_index(), best.reset_index()
    best["method"] = False
    directions = cells.groupby("metric")["direction"].first().to_dict()
    return table, best, directions


def table_markdown(cells: pd.DataFrame, digits: int = 3) -> str:
    """The :func:`wide_table` of one (model, dataset) as Markdown, best cells in bold, and a
    warning line where a cell rests on fewer than :data:`bench.results.stats.MIN_IMAGES` images."""
    table, best, directions = wide_table(cells, digits)
    shown = table.copy()
    for c in shown.columns:
        shown[c] = [f"**{v}**" if b else v for v, b in zip(shown[c], best[c])]
    shown.columns = [f"{c}{MD_ARROWS.get(directions.get(c, ''), '')}" for c in shown.columns]
    return markdown(shown) + few_images_line(cells)


def few_images_line(cells: pd.DataFrame) -> str:
    """A warning paragraph for the cells of ``cells`` on fewer than ``MIN_IMAGES`` images ("" if none)."""
    few = cells[(cells["n"] > 0) & (cells["n"] < stats.MIN_IMAGES)]
    if few.empty:
        return ""
    n = ", ".join(map(str, sorted(set(few["n"]))))
    return (
        f"\n\nWARNING: {len(few)} cell(s) rest on fewer than {stats.MIN_IMAGES} images (n = {n}): "
        "their intervals and any test on them are unreliable."
    )


def table_latex(cells: pd.DataFrame, digits: int = 3) -> str:
    """The :func:`wide_table` of one (model, dataset) as a booktabs ``tabular`` (pandas'
    ``Styler.to_latex``) to ``\\input``: cells and method names escaped, best cells in bold,
    arrows for directions; needs ``\\usepackage{booktabs}``."""
    table, best, directions = wide_table(cells, digits, dash="--")
    headers = [tex_escape(c) + TEX_ARROWS.get(directions.get(c, ""), "") for c in table.columns]
    table.columns = headers
    best.columns = headers
    styler = table.style.hide(axis="index").format(escape="latex")
    styler = styler.apply(lambda col: np.where(best[col.name], "textbf:--rwrap;", ""), axis=0)
    return styler.to_latex(hrules=True, column_format="l" + "r" * (len(headers) - 1))


Records = Mapping[Any, Record | Mapping[str, Any]] | Iterable[Record | Mapping[str, Any]]


def _records(records: Records | None, rows: pd.DataFrame) -> dict[str, Record]:
    """Records keyed by job folder; read from the rows' ``job`` folders when ``records`` is None;
    a plain list of records is keyed by position. A record given as a dict (its JSON) is read
    as one (:meth:`bench.engine.record.Record.of`)."""
    if records is None:
        jobs = rows["job"].dropna().unique() if "job" in rows else []
        return {str(j): read_record(Path(j)) for j in jobs}
    if isinstance(records, Mapping):
        return {str(k): Record.of(v) for k, v in records.items()}
    return {f"#{i}": Record.of(r) for i, r in enumerate(records)}


def _throughput_row(rec: Record, mine: pd.DataFrame | None) -> dict[str, Any]:
    """One job's row of :func:`throughput`: its labels (the rows' where given), its images
    (:meth:`~bench.engine.record.Record.images_timed`) and what it spent, summed later."""
    if mine is not None and len(mine):
        labels = {c: str(mine[c].iloc[0]) for c in ("model", "dataset", "method")}
    else:
        labels = {
            "model": str((rec.model or {}).get("name", "")),
            "dataset": rec.dataset.name if rec.dataset is not None else "",
            "method": rec.method.name if rec.method is not None else "",
        }
    nan = float("nan")
    forward, cache, tp = rec.forward or {}, rec.cache or {}, rec.throughput or {}
    row: dict[str, Any] = dict(labels)
    row.update(
        device=rec.device_name(),
        jobs=1,
        images=rec.images_timed(),
        wall_s=float(rec.wall_seconds if rec.wall_seconds is not None else nan),
        forward_passes=float(forward.get("images", nan)),
        forward_s=float(forward.get("seconds", nan)),
        cache_hits=int(cache.get("hits", 0) or 0),
        cache_misses=int(cache.get("misses", 0) or 0),
    )
    for phase, seconds in (rec.timings or {}).items():
        row[f"{phase}_s"] = float(seconds)
    passes = forward.get("passes") or {}
    row["model_forward"] = float(passes.get("forward", nan))
    row["model_backward"] = float(passes.get("backward", nan))
    row["images_timed"] = float(tp.get("images_timed", nan))
    for phase, info in (tp.get("phases") or {}).items():
        if "images_per_second" in info:  # per-batch phases: seconds after the warm-up
            row[f"{phase}_timed"] = float(info["seconds"])
    peaks = [float(i.get("peak_memory_mib", 0)) for i in (tp.get("phases") or {}).values()]
    row["peak_memory_mib"] = max(peaks) if peaks else nan
    chunk = forward.get("chunk_size")
    row["chunk_size"] = str(chunk) if chunk is not None else ""
    return row


def _per_image(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`throughput`'s table from its job rows: summed per cell, divided by the images."""
    keys = ["model", "dataset", "method"]
    phases = [c for c in df.columns if c.endswith("_s") and c not in ("wall_s", "forward_s")]
    timed = [c for c in df.columns if c.endswith("_timed")]
    summed = ["jobs", "images", "wall_s", "forward_passes", "forward_s", "cache_hits"]
    summed += ["cache_misses", "model_forward", "model_backward", "images_timed", *phases, *timed]
    agg = df.groupby(keys, sort=True).agg(
        {
            **{c: lambda s: s.sum(min_count=1) for c in summed},
            "device": lambda s: ",".join(sorted(set(s))),
            "peak_memory_mib": "max",
            "chunk_size": lambda s: ",".join(sorted({v for v in s if v})),
        }
    )
    per = agg["images"].where(agg["images"] > 0)
    table = agg[["device", "jobs", "images", "wall_s"]].copy()
    table["wall_s_per_image"] = agg["wall_s"] / per
    for c in sorted(phases, key=lambda c: (not c.startswith("attribute"), c)):
        table[f"{c}_per_image"] = agg[c] / per
    for c in sorted(timed, key=lambda c: (not c.startswith("attribute"), c)):
        table[f"{c.removesuffix('_timed')}_images_per_s"] = agg["images_timed"] / agg[c].where(
            agg[c] > 0
        )
    for c in ("forward_passes", "forward_s", "model_forward", "model_backward"):
        table[f"{c}_per_image"] = agg[c] / per
    table["peak_memory_mib"] = agg["peak_memory_mib"]
    table["chunk_size"] = agg["chunk_size"]
    for c in ("cache_hits", "cache_misses"):
        table[c] = agg[c].astype(int)
    table["jobs"] = table["jobs"].astype(int)
    table["images"] = table["images"].astype(int)
    return table.reset_index()


def throughput(records: Records, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seconds and forward passes per image from job records (``timings``, ``wall_seconds``,
    ``forward``, ``device``, ``cache``; a mapping job folder -> record, or a list of records),
    one row per (model, dataset, method), jobs of a cell (shards) summed. The labels are the
    rows' where ``rows`` has the job's ``job`` folder (method labels naming variants), else the
    record's. ``images`` are the images the jobs' timings cover
    (:meth:`bench.engine.record.Record.images_timed`: a resumed job's, those it scored after
    resuming), the count the throughput figure divides by too.

    Returns ``model, dataset, method, device, jobs, images, wall_s, wall_s_per_image``,
    ``<phase>_s_per_image`` for every phase timed (``attribute``, ``metric.<name>``, ...),
    ``<phase>_images_per_s`` for the per-batch phases (after the warm-up batches),
    ``forward_passes_per_image`` and ``forward_s_per_image`` (the metrics' chunked forwards),
    ``model_forward_per_image`` and ``model_backward_per_image`` (every pass through the model,
    methods' included), ``peak_memory_mib`` (the largest phase peak), ``chunk_size``,
    ``cache_hits`` and ``cache_misses``."""
    recs = records if isinstance(records, Mapping) else {f"#{i}": r for i, r in enumerate(records)}
    has_jobs = rows is not None and "job" in rows
    out = [
        _throughput_row(Record.of(rec), rows[rows["job"] == str(job)] if has_jobs else None)
        for job, rec in recs.items()
    ]
    if not out:
        columns = ["model", "dataset", "method", "device", "jobs", "images", "wall_s"]
        return pd.DataFrame(columns=columns)
    return _per_image(pd.DataFrame(out))


def _write(out: Path, name: str, text: str, written: dict[str, Path]) -> None:
    path = out / name
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    written[name] = path


def _sections(df: pd.DataFrame, keys: Sequence[str], render) -> str:
    """Markdown sections, one per group of ``keys`` (``### model=a dataset=b``)."""
    if df.empty:
        return "(none)"
    parts = []
    for key, g in df.groupby(list(keys), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        title = " ".join(f"{k}={v}" for k, v in zip(keys, key))
        parts.append(f"### {title}\n\n{render(g)}")
    return "\n\n".join(parts)


def _cell_tables(rows, out, ranges, boot, digits, written) -> pd.DataFrame:
    """``table.csv``, ``table.md`` and a ``.tex`` per (model, dataset); returns the cells."""
    level, ci_method = boot["level"], boot["method"]
    cells = stats.cell_table(rows, ["model", "dataset", "method", "metric"], ranges, **boot)
    _write(out, "table.csv", cells.to_csv(index=False), written)
    md = _sections(cells, ["model", "dataset"], lambda g: table_markdown(g, digits))
    _write(out, "table.md", f"{_head(boot)}\n\n{md}", written)
    for (model, dataset), g in cells.groupby(["model", "dataset"], sort=True):
        tex = table_latex(g, digits)
        note = (
            f"% model={model}, dataset={dataset}: mean [{level:.0%} {ci_method} bootstrap "
            "interval] over images; bold: best per column. Needs \\usepackage{booktabs}.\n"
        )
        _write(out, f"table_{slug(model, dataset)}.tex", note + tex, written)
    return cells


def _head(boot: dict[str, Any]) -> str:
    return (
        f"Mean over images [{boot['level']:.0%} {boot['method']} bootstrap interval, "
        f"{boot['n_resamples']} resamples, seed {boot['seed']}]; bold: best of its column "
        "(↑ higher, ↓ lower is better; no arrow: descriptive); n: images scored; excluded: rows "
        "flagged (non-finite or constant map) or NaN, counted and not averaged."
    )


def _breakdowns(rows, out, ranges, boot, digits, written) -> None:
    """``by_model``, ``by_dataset``, ``by_class`` (.csv, .md) and ``class_means.csv``."""
    for name, by in (
        ("by_model", ["model", "method", "metric"]),
        ("by_dataset", ["dataset", "method", "metric"]),
    ):
        t = stats.cell_table(rows, by, ranges, **boot)
        _write(out, f"{name}.csv", t.to_csv(index=False), written)
        _write(out, f"{name}.md", f"{_head(boot)}\n\n{_md_cells(t, by[0], digits)}", written)
    per_class = stats.class_cells(rows, ranges, **boot)
    protocol = stats.class_means(rows)
    _write(out, "by_class.csv", per_class.to_csv(index=False), written)
    _write(out, "class_means.csv", protocol.to_csv(index=False), written)
    _write(
        out,
        "by_class.md",
        "Per class (target) for the metrics whose protocol averages over classes, and the "
        "protocol's class mean (unweighted over the dataset's classes; a class without a scored "
        "pair counts 0).\n\n"
        + markdown(protocol)
        + "\n\n"
        + _sections(
            per_class,
            ["model", "dataset", "metric"],
            lambda g: markdown(_cells_md_frame(g, ["target", "method"], digits)),
        ),
        written,
    )


def _rank_and_test_tables(rows, cells, out, written) -> None:
    """``ranks``, ``mean_ranks``, ``rank_agreement`` (+ ``ranks.md``); ``paired``, ``friedman``
    (+ ``paired.md``)."""
    ranks = stats.rank_methods(cells)
    mranks = stats.mean_ranks(ranks)
    agree = stats.rank_agreement(ranks)
    _write(out, "ranks.csv", ranks.to_csv(index=False), written)
    _write(out, "mean_ranks.csv", mranks.to_csv(index=False), written)
    _write(out, "rank_agreement.csv", agree.to_csv(index=False), written)
    _write(out, "ranks.md", _ranks_md(ranks, mranks, agree), written)
    pairs = stats.pairwise_tests(rows)
    friedman = stats.friedman_tests(rows)
    _write(out, "paired.csv", pairs.to_csv(index=False), written)
    _write(out, "friedman.csv", friedman.to_csv(index=False), written)
    _write(out, "paired.md", _paired_md(pairs, friedman), written)


def write_paper_tables(
    collation_or_df: Any,
    records: Records | None,
    out_dir: str | Path,
    *,
    level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    ci_method: str = "BCa",
    digits: int = 3,
) -> dict[str, Path]:
    """Write the paper tables of a :class:`bench.results.collate.Collation` (or its long ``rows``) into
    ``out_dir``; ``records`` are the job records (a mapping job folder -> record, a list of
    records, or None to read them from the rows' ``job`` folders) for the score ranges and the
    throughput table. Nothing is written when there are no rows.

    Files (every ``.md`` beside its ``.csv``):

    * ``table.csv`` — one row per (model, dataset, method, metric): ``n``, ``flagged``, ``nan``,
      ``mean``, bootstrap ``ci_low``/``ci_high`` (``ci_method``, ``level`` over images,
      ``n_resamples``, ``seed``), ``best``; ``table.md`` and ``table_<model>_<dataset>.tex``
      (booktabs) the method × metric table of each (model, dataset), best per column in bold;
    * ``by_model.csv``, ``by_dataset.csv``, ``by_class.csv`` — the same cells pooled over datasets,
      over models, and per class (``target``) for metrics that average per class;
      ``class_means.csv`` the protocol's unweighted class mean of those metrics;
    * ``ranks.csv``, ``mean_ranks.csv``, ``rank_agreement.csv`` (+ ``ranks.md``) — ranks of
      methods per metric, mean ranks, Kendall's tau between metrics;
    * ``paired.csv`` (Wilcoxon per pair, Holm-corrected), ``friedman.csv`` (+ ``paired.md``);
    * ``throughput.csv`` — seconds and forward passes per image per method.

    Returns a dict file name -> path of every file written."""
    rows = collation_or_df.rows if isinstance(collation_or_df, Collation) else collation_or_df
    if not isinstance(rows, pd.DataFrame):
        raise ConfigError(
            f"collation_or_df={type(collation_or_df).__name__} is not valid; accepted: a "
            "bench.results.collate.Collation or its rows (a pandas DataFrame)."
        )
    written: dict[str, Path] = {}
    if rows.empty:
        return written
    stats.check_rows(rows)
    recs = _records(records, rows)
    ranges = stats.score_ranges(r.to_dict() for r in recs.values())  # stats reads the JSON form
    boot = dict(level=level, n_resamples=n_resamples, seed=seed, method=ci_method)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = _cell_tables(rows, out, ranges, boot, digits, written)
    _breakdowns(rows, out, ranges, boot, digits, written)
    _rank_and_test_tables(rows, cells, out, written)
    thr = throughput(recs, rows)
    _write(out, "throughput.csv", thr.to_csv(index=False), written)
    _write(
        out,
        "throughput.md",
        "Seconds per image by phase (jobs of a cell summed; a map read from the cache costs no "
        "attribution time) and forward passes per image.\n\n" + markdown(thr, "{:.4g}"),
        written,
    )
    return written


def _cells_md_frame(g: pd.DataFrame, keys: Sequence[str], digits: int) -> pd.DataFrame:
    shown = g[[*keys, "n", "flagged", "nan"]].copy()
    shown["mean [CI]"] = g.apply(_cell_text, axis=1, digits=digits, dash="—")
    shown["best"] = np.where(g["best"], "✓", "")
    return shown


def _md_cells(t: pd.DataFrame, group: str, digits: int) -> str:
    """One Markdown table per metric of a pooled breakdown (rows: ``group`` × method)."""
    return _sections(
        t,
        ["metric"],
        lambda g: markdown(_cells_md_frame(g, [group, "method"], digits)),
    )


def _ranks_md(ranks: pd.DataFrame, mranks: pd.DataFrame, agree: pd.DataFrame) -> str:
    parts = ["## Ranks (1 = best mean by the metric's direction; ties averaged)"]
    if not ranks.empty:
        wide = ranks.pivot_table(
            index=["model", "dataset", "method"], columns="metric", values="rank"
        ).reset_index()
        parts.append(markdown(wide, "{:.1f}"))
    parts.append("## Mean rank over metrics")
    parts.append(markdown(mranks, "{:.2f}"))
    parts.append("## Rank agreement between metrics (Kendall's tau-b over methods)")
    if agree.empty:
        parts.append("(none)")
    else:

        def matrix(g: pd.DataFrame) -> str:
            m = g.pivot(index="metric_a", columns="metric_b", values="tau")
            text = markdown(m.reset_index().rename(columns={"metric_a": "tau"}), "{:.2f}")
            pairs = g[g["metric_a"] != g["metric_b"]]
            fewest = int(pairs["n_methods"].min()) if len(pairs) else 0
            warn = stats.few_methods(fewest)
            return text + (f"\n\nWARNING: {warn}." if warn else "")

        parts.append(_sections(agree, ["model", "dataset"], matrix))
    return "\n\n".join(parts)


def _paired_md(pairs: pd.DataFrame, friedman: pd.DataFrame) -> str:
    f_cols = ["model", "dataset", "metric", "k", "n_blocks", "statistic", "p", "kendall_w"]
    f_cols += ["mean_ranks", "note"]
    p_cols = ["method_a", "method_b", "n_pairs", "median_diff", "rank_biserial", "p", "p_holm"]
    p_cols += ["better", "note"]
    parts = [
        "## Friedman test over all methods (complete blocks: images every method scored)",
        markdown(friedman[f_cols], "{:.3g}"),
        "## Pairwise Wilcoxon signed-rank tests (Holm-corrected within each metric)",
        "median_diff: median of a − b over the paired images; rank_biserial: matched-pairs "
        "rank-biserial correlation (> 0: a scores higher); better: the method the metric's "
        f"direction favours where p_holm < {stats.ALPHA}, by the sign of the rank-biserial "
        "correlation; empty: tied (no difference at that level), or not tested.",
        _sections(pairs, ["model", "dataset", "metric"], lambda g: markdown(g[p_cols], "{:.3g}")),
    ]
    return "\n\n".join(parts)
