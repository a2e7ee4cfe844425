"""Significance and agreement: per metric the pairwise tests as a heat map and a
critical-difference diagram (Demšar 2006); the rank agreement between metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.results import stats
from bench.results.report.charts import cd_diagram, css_colour, svg
from bench.results.report.data import Study
from bench.results.report.page import Cell, Section, esc, figure, table
from bench.results.summary import ARROWS

#: Metrics whose significance block is open when the page loads (the others: a click away).
OPEN = 4


def _level(p: float) -> int:
    return 3 if p < 0.001 else 2 if p < 0.01 else 1


def pair_matrix(pairs: pd.DataFrame, methods: list[str]) -> str:
    """The pairwise tests of one (model, dataset, metric) as a methods × methods heat map: blue
    ▲ where the row's method is significantly better than the column's, orange ▼ where worse
    (darker: Holm p below 0.01, 0.001), grey · where the test finds no difference, blank where
    no test ran."""
    by = {}
    for r in pairs.assign(tested=stats.tested(pairs)).itertuples(index=False):
        by[(r.method_a, r.method_b)] = r
        by[(r.method_b, r.method_a)] = r
    rows = []
    for a in methods:
        row: list[str | Cell] = [Cell(esc(a), cls="rowhead")]
        for b in methods:
            r = by.get((a, b))
            if a == b or r is None:
                row.append(Cell("", cls="na"))
                continue
            p = r.p_holm
            title = (
                f"{a} vs {b}: Holm p={p:.3g}, rank-biserial={r.rank_biserial:+.2f} "
                f"(as {r.method_a} − {r.method_b}), {r.n_pairs} images"
            )
            if r.better == a:
                row.append(Cell("▲", cls=f"w{_level(p)}", title=title))
            elif r.better == b:
                row.append(Cell("▼", cls=f"l{_level(p)}", title=title))
            elif r.tested:
                row.append(Cell("·", cls="tie", title=title))
            else:
                row.append(Cell("", cls="na", title=f"{a} vs {b}: not tested ({r.note})"))
        rows.append(row)
    headers = [Cell("row vs column")] + [Cell(esc(m)) for m in methods]
    return table(headers, rows, sortable=False, cls="heat")


def _metric_block(study: Study, key: tuple, g: pd.DataFrame, open_: bool) -> str:
    model, dataset, metric = key
    direction = str(g["direction"].iloc[0])
    ranks = study.avg_ranks
    mine = ranks[
        (ranks["model"] == model) & (ranks["dataset"] == dataset) & (ranks["metric"] == metric)
    ]
    methods = list(mine.sort_values("avg_rank")["method"]) if len(mine) else sorted(
        set(g["method_a"]) | set(g["method_b"]))  # fmt: skip
    parts = ['<div class="pair">' + pair_matrix(g, methods)]
    name = f"{model} / {dataset} / {metric} {ARROWS.get(direction, '')}".rstrip()
    if direction not in ("higher", "lower"):
        parts.append('<p class="missing">No critical-difference diagram: a descriptive metric '
                     "has no better direction.</p>")  # fmt: skip
    elif len(mine) < 3:
        parts.append(f'<p class="missing">No critical-difference diagram: {len(mine)} method(s) '
                     "scored the same images; it needs 3 or more.</p>")  # fmt: skip
    else:
        n, cd = int(mine["n_blocks"].iloc[0]), float(mine["cd"].iloc[0])
        fig = cd_diagram(list(mine["method"]), list(mine["avg_rank"]), cd, name)
        slug = "cd-" + "-".join(esc(x) for x in key)
        parts.append(
            figure(
                svg(fig, slug),
                (
                    f"Average rank over the {n} images every method scored (1 = best). Bars join methods "
                    f"whose average ranks differ by less than Nemenyi's critical difference "
                    f"(CD = {cd:.2f} at α = {stats.ALPHA}): no significant difference by that test."
                ),
            )
        )
    parts.append("</div>")
    state = " open" if open_ else ""
    return f"<details{state}><summary>{esc(name)}</summary>{''.join(parts)}</details>"


def significance_section(study: Study) -> Section:
    sec = Section("significance", "Significance per metric")
    pairs = study.pairs
    if pairs.empty:
        return sec.without("No paired test: every (model, dataset, metric) has a single method.")
    parts = [
        '<p class="small">Paired Wilcoxon signed-rank tests over the images both methods '
        "scored, Holm-corrected within each metric (as <code>paired.csv</code>): "
        '<span class="w2">&nbsp;▲&nbsp;</span> the row\'s method is better, '
        '<span class="l2">&nbsp;▼&nbsp;</span> worse (darker: p &lt; 0.01, &lt; 0.001), '
        f'<span class="tie">&nbsp;·&nbsp;</span> no difference at α = {stats.ALPHA}; blank: '
        "not tested. Methods ordered by average rank. Hover a cell for its p-value.</p>"
    ]
    groups = list(pairs.groupby(["model", "dataset", "metric"], sort=True))
    for i, (key, g) in enumerate(groups):
        parts.append(_metric_block(study, key, g, i < OPEN))
    sec.body = "".join(parts)
    return sec


def agreement_section(study: Study) -> Section:
    """Kendall's tau between the metrics' rankings of the methods (``rank_agreement.csv``)."""
    sec = Section("agreement", "Rank agreement between metrics")
    agree = study.agreement
    if agree.empty or agree["metric_a"].nunique() < 2:
        return sec.without(
            "No rank agreement: it needs two metrics with a direction that rank the methods."
        )
    parts = ['<p class="small">Kendall\'s τ-b between the rankings two metrics give the methods '
             "(direction-aware: +1 = they agree on the order), as in <code>rank_agreement.csv"
             "</code>; grey: undefined (fewer than 2 common methods or a constant ranking).</p>"]  # fmt: skip
    for (model, dataset), g in agree.groupby(["model", "dataset"], sort=True):
        tau = g.pivot(index="metric_a", columns="metric_b", values="tau")
        metrics = list(tau.index)
        rows = []
        for a in metrics:
            row: list[str | Cell] = [Cell(esc(a), cls="rowhead")]
            for b in metrics:
                v = float(tau.at[a, b])
                text = "n/a" if not np.isfinite(v) else f"{v:.2f}"
                row.append(Cell(text, title=f"{a} vs {b}: τ = {text}", style=css_colour(v)))
            rows.append(row)
        fewest = g.loc[g["metric_a"] != g["metric_b"], "n_methods"]
        warn = stats.few_methods(int(fewest.min())) if len(fewest) else ""
        parts.append(f"<h3>{esc(model)} / {esc(dataset)}</h3>")
        parts.append(
            table([Cell("τ")] + [Cell(esc(m)) for m in metrics], rows, sortable=False, cls="heat")
        )
        if warn:
            parts.append(f'<p class="warn small">WARNING: {esc(warn)}.</p>')
    sec.body = "".join(parts)
    return sec
