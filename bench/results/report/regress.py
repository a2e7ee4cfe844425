"""The regression page: a ``bench-regress`` check (baseline vs current) as the same kind of
self-contained page as the report, to attach to a CI run: the verdict, the failing cells, and per
cell both means, the difference, the tolerance, the paired test and the verdict."""

from __future__ import annotations

import time

from bench.results.regress import Comparison, RegressionCheck
from bench.results.regress_report import machines, tolerance_text, versions_text
from bench.results.report.page import Cell, Section, document, esc, number_cell, table
from bench.results.summary import ARROWS

#: How each verdict reads on the page.
VERDICTS = {
    "ok": "ok",
    "regressed": "REGRESSED",
    "missing": "MISSING",
    "improved": "improved",
    "changed": "changed",
    "new": "new",
}


def _row(c: Comparison) -> list[str | Cell]:
    model, dataset, method, metric = c.key
    delta, worse = c.delta, c.worse
    verdict = VERDICTS.get(c.status, c.status)
    return [
        model,
        dataset,
        method,
        Cell(f"{esc(metric)} {ARROWS.get(c.direction, '')}".rstrip(), metric),
        number_cell(c.base, 4),
        number_cell(c.current, 4),
        Cell("—" if delta is None else f"{delta:+.4f}", "" if delta is None else repr(delta), "num"),
        Cell("—" if c.allowed is None else f"±{c.allowed:.4f}", "" if c.allowed is None else repr(c.allowed), "num"),
        Cell("—" if worse is None else f"{worse:+.4f}", "" if worse is None else repr(worse), "num"),
        Cell(f"{c.n_base}/{c.n_current}", str(c.n_current), "num"),
        number_cell(c.p, 3),
        Cell(esc(verdict), verdict, f"verdict status-{c.status}"),
        "; ".join(c.notes),
    ]  # fmt: skip


def regression_page(check: RegressionCheck) -> str:
    """The page of one check."""
    comparisons, baseline, failing = check.comparisons, check.baseline, check.failing
    if failing:
        names = ", ".join(f"{c.key[2]} / {c.key[3]}" for c in failing)
        banner = (
            f'<p class="banner">✗ {len(failing)} regression(s) of {len(comparisons)} cells: '
            f"{esc(names)}.</p>"
        )
    else:
        banner = f'<p class="banner ok">✓ No regression in {len(comparisons)} cells.</p>'
    headers = ["model", "dataset", "method", "metric", "baseline", "current", "Δ",
               Cell("allowed", title="the tolerance: how far the mean may move in its worse direction"),
               Cell("worse by", title="how much worse the current mean is (negative: better)"),
               Cell("n", title="images: baseline / current"), Cell("p", title="paired test, one-sided"),
               "verdict", "notes"]  # fmt: skip
    cells = Section("cells", "Every cell: baseline vs current")
    cells.body = table(headers, [_row(c) for c in comparisons], data_table="regress")
    detail = Section("failing", "Failing cells")
    if failing:
        detail.body = (
            "<ul>" + "".join(f'<li class="bad">{esc(c.line())}</li>' for c in failing) + "</ul>"
        )
    else:
        detail.missing = "None: every cell is within its tolerance."
    how = Section("how", "Tolerance and provenance")
    command = (
        f", made by <code>{esc(baseline['command'])}</code>" if baseline.get("command") else ""
    )
    how.body = (
        f"<p>{esc(tolerance_text(check.tol))}</p>"
        f"<p>Baseline <code>{esc(check.baseline_path)}</code> ({esc(baseline.get('created', '?'))}; "
        f"{esc(versions_text(baseline.get('versions') or {}))}){command}. Current: "
        f"<code>{esc(' '.join(map(str, check.current)))}</code> ({esc(versions_text(check.versions))}).</p>"
        f"<p>{esc(machines(baseline.get('machine'), check.machine))}</p>"
    )
    sections = [detail, cells, how]
    if check.notes:
        extra = Section("notes", "Notes on the current run")
        extra.body = (
            "<ul>" + "".join(f'<li class="warn">{esc(n)}</li>' for n in check.notes) + "</ul>"
        )
        sections.append(extra)
    made = time.strftime("%Y-%m-%d %H:%M:%S %z")
    subtitle = f"baseline {esc(check.baseline_path)} vs {esc(' '.join(map(str, check.current)))} · made {made}"
    return document("Attribution regression check", subtitle, sections, banner)
