"""The report's tables: the method × metric table of each (model, dataset) (the cells of
``table.csv``, best and tied-best marked by the paired tests), per-class results and throughput."""

from __future__ import annotations

import pandas as pd

from bench.results import stats
from bench.results.figure_stats import throughput_figure
from bench.results.papers import wide_table
from bench.results.report.charts import svg
from bench.results.report.data import Study
from bench.results.report.page import Cell, Section, esc, figure, number_cell, table
from bench.results.report.protocols import Protocol
from bench.results.summary import ARROWS

WORDS = {"higher": "higher is better", "lower": "lower is better", "none": "descriptive"}
#: Classes shown one column each in the per-class table (more: the protocol's mean only).
MAX_CLASSES = 40


def metric_header(metric: str, direction: str, protocol: Protocol | None) -> Cell:
    """A metric's column header: its name, direction arrow and a link to its protocol."""
    arrow = ARROWS.get(direction, "")
    link = f' <a href="#{esc(protocol.id)}" title="protocol">§</a>' if protocol else ""
    return Cell(
        f"{esc(metric)} {arrow}{link}".rstrip(),
        title=f"{metric}: {WORDS.get(direction, direction)}",
    )


def cell_title(r: pd.Series) -> str:
    words = [f"n={int(r['n'])}", f"flagged={int(r['flagged'])}", f"nan={int(r['nan'])}"]
    if r.get("ci_method"):
        words.append(f"interval: {r['ci_method']}")
    if r.get("note"):
        words.append(str(r["note"]))
    return "; ".join(words)


def cell_grid(cells: pd.DataFrame, protocols: dict[str, Protocol]) -> str:
    """One (model, dataset)'s method × metric table: ``wide_table``'s text (the tables'
    ``mean [low, high]``), each cell sorted by its mean, ``best`` and ``tied`` classes."""
    text, best, directions = wide_table(cells)
    metrics = [c for c in text.columns if c not in ("method", "n", "excluded")]
    by = cells.set_index(["method", "metric"])
    headers: list[str | Cell] = [
        "method",
        Cell("n", title="images scored"),
        Cell(
            "excluded",
            title="rows flagged (non-finite or constant map) or NaN, the most of any metric",
        ),
    ]
    headers += [metric_header(m, directions.get(m, "none"), protocols.get(m)) for m in metrics]
    rows = []
    for i, method in enumerate(text["method"]):
        n, excl = text.at[i, "n"], text.at[i, "excluded"]
        row: list[str | Cell] = [method, Cell(n, n.split("–")[0], "num"), Cell(excl, excl, "num")]
        for m in metrics:
            if (method, m) not in by.index:
                row.append(Cell("—", "", "num"))
                continue
            r = by.loc[(method, m)]
            cls = "num best" if best.at[i, m] else "num tied" if r["tied_best"] else "num"
            row.append(Cell(esc(text.at[i, m]), number_cell(r["mean"]).sort, cls, cell_title(r)))
        rows.append(row)
    return table(headers, rows, data_table="cells")


def tables_section(study: Study, protocols: dict[str, Protocol]) -> Section:
    sec = Section("tables", "Results: method × metric")
    cells = study.cells
    if cells.empty:
        return sec.without("No table: no completed job left a score.")
    parts = [
        '<p class="small">Mean over images [95% BCa bootstrap interval, 9999 resamples, seed 0], '
        "as in <code>table.csv</code>; n: images scored; excluded: rows flagged or NaN, counted "
        "and not averaged. <b>Bold ★</b>: best mean of its column; <u>underlined ≈</u>: tied "
        "with the best (paired Wilcoxon signed-rank test, Holm-corrected within the metric, "
        f"p ≥ {stats.ALPHA}). The test compares per-image differences, so it can favour a "
        "method whose mean is not the best (see Significance). Click a header to sort; § opens "
        "the metric's protocol.</p>"
    ]
    for (model, dataset), g in cells.groupby(["model", "dataset"], sort=True):
        parts.append(f"<h3>{esc(model)} / {esc(dataset)}</h3>{cell_grid(g, protocols)}")
        few = g[(g["n"] > 0) & (g["n"] < stats.MIN_IMAGES)]
        if len(few):
            parts.append(
                f'<p class="warn small">WARNING: {len(few)} cell(s) rest on fewer than '
                f"{stats.MIN_IMAGES} images: their intervals and tests are unreliable.</p>"
            )
    parts.append(_directions(cells, protocols))
    sec.body = "".join(parts)
    return sec


def _directions(cells: pd.DataFrame, protocols: dict[str, Protocol]) -> str:
    items = []
    for metric, d in cells.groupby("metric")["direction"].first().items():
        p = protocols.get(metric)
        where = (
            f' — protocol: <a href="#{esc(p.id)}">{esc(p.title)}</a>'
            if p
            else " — protocol: not in docs/PROTOCOLS.md here"
        )
        items.append(
            f"<li><code>{esc(metric)}</code> {ARROWS.get(d, '')} {WORDS.get(d, d)}{where}</li>"
        )
    return f'<details><summary>Metrics: direction and protocol</summary><ul class="small">{"".join(items)}</ul></details>'


def class_section(study: Study) -> Section:
    """Per-class results of the metrics whose protocol averages per class."""
    sec = Section("per-class", "Per-class results")
    per, means = study.per_class, study.class_means
    if per.empty:
        return sec.without("No metric here averages per class (e.g. the pointing game does).")
    parts = []
    for (model, dataset, metric), g in per.groupby(["model", "dataset", "metric"], sort=True):
        p = means[
            (means["model"] == model) & (means["dataset"] == dataset) & (means["metric"] == metric)
        ]
        classes = sorted(g["target"].unique())
        headers: list[str | Cell] = [
            "method",
            Cell(
                "class mean",
                title="the protocol's score: "
                "unweighted mean over the dataset's classes, a class "
                "without a scored pair counting 0",
            ),
            "classes scored",
        ]
        shown = classes if len(classes) <= MAX_CLASSES else []
        headers += [Cell(f"class {esc(c)}") for c in shown]
        rows = []
        for method, h in g.groupby("method", sort=True):
            q = p[p["method"] == method]
            mean = q["class_mean"].iloc[0] if len(q) else float("nan")
            scored = (
                f"{int(q['classes_scored'].iloc[0])}/{int(q['num_classes'].iloc[0])}"
                if len(q)
                else "—"
            )
            row: list[str | Cell] = [
                method,
                number_cell(mean),
                Cell(scored, scored.split("/")[0], "num"),
            ]
            vals = h.set_index("target")
            for c in shown:
                r = vals.loc[c] if c in vals.index else None
                cell = number_cell(None if r is None else r["mean"])
                cell.title = "" if r is None else f"n={int(r['n'])}"
                row.append(cell)
            rows.append(row)
        more = "" if shown else f" ({len(classes)} classes: per-class values in by_class.csv)"
        parts.append(f"<h3>{esc(model)} / {esc(dataset)} / {esc(metric)}{esc(more)}</h3>")
        parts.append(table(headers, rows))
    sec.body = "".join(parts)
    return sec


#: Throughput columns of ``throughput.csv`` shown first (header, column), seconds per image.
THROUGHPUT = [("total", "wall_s_per_image"), ("attribution", "attribute_s_per_image")]
#: The setup phases, summed into one column.
SETUP = ("load_model_s_per_image", "load_data_s_per_image", "cache_key_s_per_image")


def _throughput_rows(g: pd.DataFrame) -> tuple[list[str | Cell], list[list[str | Cell]]]:
    metric_cols = sorted(
        c for c in g.columns if c.startswith("metric.") and c.endswith("_s_per_image")
    )
    cols = [*THROUGHPUT, *((c[7:].removesuffix("_s_per_image"), c) for c in metric_cols)]
    cols += [("data", "data_s_per_image")] if "data_s_per_image" in g else []
    cols = [(h, c) for h, c in cols if c in g]
    setup = [c for c in SETUP if c in g]
    headers: list[str | Cell] = [
        "method",
        "device",
        Cell("images", title="images the timings cover"),
    ]
    headers += [Cell(esc(h), title=f"{c} (seconds per image)") for h, c in cols]
    headers += (
        [Cell("setup", title="loading the model and data, the cache key (seconds per image)")]
        if setup
        else []
    )
    headers += [Cell("peak MiB", title="largest memory peak of a phase"), "cache hits"]
    rows = []
    for _, r in g.iterrows():
        row: list[str | Cell] = [
            r["method"],
            r["device"],
            Cell(str(r["images"]), str(r["images"]), "num"),
        ]
        row += [number_cell(r[c], 4) for _, c in cols]
        row += [number_cell(sum(r[c] for c in setup), 4)] if setup else []
        hits = f"{int(r.get('cache_hits', 0))}/{int(r['images'])}"
        row += [
            number_cell(r.get("peak_memory_mib"), 0),
            Cell(hits, str(r.get("cache_hits", 0)), "num"),
        ]
        rows.append(row)
    return headers, rows


def throughput_section(study: Study) -> Section:
    """Seconds per image per method and phase (``throughput.csv``) and the throughput figure."""
    sec = Section("throughput", "Throughput")
    if study.throughput.empty:
        return sec.without("No timings: no completed job recorded them.")
    parts = ['<p class="small">Seconds per image by phase (jobs of a cell summed; a map read '
             "from the attribution cache costs no attribution time), as in <code>throughput.csv"
             "</code>.</p>"]  # fmt: skip
    for (model, dataset), g in study.throughput.groupby(["model", "dataset"], sort=True):
        parts.append(f"<h3>{esc(model)} / {esc(dataset)}</h3>")
        parts.append(table(*_throughput_rows(g)))
    fig = throughput_figure(study.jobs)
    if fig is not None:
        parts.append(figure(svg(fig, "throughput"), "Seconds per image per method and phase."))
    sec.body = "".join(parts)
    return sec
