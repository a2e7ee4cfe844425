"""The first and the last section of a report: what was run, and what went wrong (jobs that did
not complete, flagged or skipped images, every warning)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from bench.engine.record import Record
from bench.results import stats
from bench.results.report.data import Study, flagged_rows
from bench.results.report.page import Cell, Section, esc, table

#: Flagged rows listed one by one (the rest counted).
MAX_FLAGGED = 200


def _values(records: Iterable[Record], get) -> list[str]:
    out: dict[str, None] = {}
    for r in records:
        v = get(r)
        if v not in (None, "", [], {}):
            out[str(v)] = None
    return list(out)


def _joined(values: list[str]) -> str:
    return ", ".join(values) if values else "unknown"


def _versions(records: list[Record]) -> str:
    """Package versions the jobs ran with (``name version``; several values where jobs differ)."""
    seen: dict[str, dict[str, None]] = {}
    for r in records:
        for k, v in (r.versions or {}).items():
            if k != "git":
                seen.setdefault(k, {})[str(v)] = None
    return ", ".join(f"{k} {' / '.join(v)}" for k, v in seen.items()) or "unknown"


def _device(r: Record) -> str:
    d = r.device or {}
    name = d.get("gpu") or d.get("device") or ""
    threads = f", {d['torch_threads']} torch threads" if d.get("torch_threads") else ""
    return f"{name}{threads}" + (f" ({d['platform']})" if d.get("platform") else "")


def run_section(study: Study) -> Section:
    """Models, datasets, methods, metrics, images, the command line, dates, commit, device and
    package versions."""
    sec = Section("run", "What was run")
    rows, records = study.rows, list(study.records.values())
    if not records:
        sec.missing = "No completed job was found under " + ", ".join(map(str, study.roots)) + "."
        if study.collation.incomplete:
            sec.missing += " Jobs that did not complete are listed under Problems."
        return sec
    images = rows.groupby(["model", "dataset"])["image_id"].nunique()
    started = sorted(_values(records, lambda r: r.started))
    items = [
        ("Models", _joined(sorted(rows["model"].unique()))),
        ("Datasets", _joined(sorted(rows["dataset"].unique()))),
        ("Methods", f"{rows['method'].nunique()}: " + _joined(sorted(rows["method"].unique()))),
        ("Metrics", f"{rows['metric'].nunique()}: " + _joined(sorted(rows["metric"].unique()))),
        ("Images", "; ".join(f"{m} / {d}: {n}" for (m, d), n in images.items())),
        ("Jobs", _jobs_line(study)),
        ("Started", f"{started[0]} to {started[-1]}" if len(started) > 1 else _joined(started)),
        ("Report made", study.created),
        ("Commit", _joined(_values(records, lambda r: (r.versions or {}).get("git")))),
        ("Device", _joined(_values(records, _device))),
        ("Packages", _versions(records)),
        ("Folders", _joined([str(r) for r in study.roots])),
    ]
    cmd = (
        f"<pre><code>{esc(study.command)}</code></pre>"
        if study.command
        else '<span class="missing">not recorded (no multirun.yaml or .hydra/overrides.yaml)</span>'
    )
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
    sec.body = f'<dl class="run">{body}<dt>Command</dt><dd>{cmd}</dd></dl>'
    return sec


def _jobs_line(study: Study) -> str:
    c = study.collation
    parts = [f"{len(study.jobs)} completed"]
    if c.incomplete:
        parts.append(f"{len(c.incomplete)} did not complete")
    if c.not_applicable:
        parts.append(f"{len(c.not_applicable)} not applicable (skipped)")
    if c.empty:
        parts.append(f"{len(c.empty)} with no image")
    return ", ".join(parts)


def warnings_of(study: Study) -> list[str]:
    """Every warning the tables carry: cells and tests on few images, rank agreements over few
    methods, Friedman tests that could not run, and the report's own notes."""
    out = list(study.notes)
    cells = study.cells
    if not cells.empty:
        few = cells[(cells["n"] > 0) & (cells["n"] < stats.MIN_IMAGES)]
        for (model, dataset), g in few.groupby(["model", "dataset"]):
            n = ", ".join(map(str, sorted(set(g["n"]))))
            out.append(
                f"{model} / {dataset}: {len(g)} cell(s) of {g['method'].nunique()} method(s) rest "
                f"on fewer than {stats.MIN_IMAGES} images (n = {n}): their intervals and tests are "
                "unreliable"
            )
        nothing = cells[cells["n"] == 0]
        for r in nothing.itertuples(index=False):
            out.append(f"{r.model} / {r.dataset} / {r.method} / {r.metric}: no finite score")
    agree = study.agreement
    if not agree.empty:
        pairs = agree[(agree["metric_a"] != agree["metric_b"]) & (agree["note"] != "")]
        for (m, d), g in pairs.groupby(["model", "dataset"]):
            out.append(f"{m} / {d}: rank agreement: {g['note'].iloc[0]}")
    if not study.friedman.empty:
        for r in study.friedman[study.friedman["note"] != ""].itertuples(index=False):
            out.append(f"{r.model} / {r.dataset} / {r.metric}: Friedman test: {r.note}")
    return out


def problems_section(study: Study) -> Section:
    """Jobs that did not complete or were skipped, unreadable images, flagged rows, warnings."""
    sec = Section("problems", "Problems and warnings")
    lines = study.collation.report()
    flagged = flagged_rows(study.rows)
    warns = warnings_of(study)
    if not (lines or len(flagged) or warns):
        if not study.jobs:
            return sec.without("No job was found: nothing to report.")
        sec.body = "<p>Every job completed; no image was flagged or skipped; no warning.</p>"
        return sec
    parts = []
    if lines:
        items = "".join(f'<li class="bad">{esc(x)}</li>' for x in lines)
        parts.append(f"<h3>Jobs and images left out ({len(lines)})</h3><ul>{items}</ul>")
    if len(flagged):
        parts.append(_flagged_html(flagged))
    if warns:
        items = "".join(f'<li class="warn">{esc(x)}</li>' for x in warns)
        parts.append(f"<h3>Warnings ({len(warns)})</h3><ul>{items}</ul>")
    sec.body = "".join(parts)
    return sec


def _flagged_html(flagged: pd.DataFrame) -> str:
    counts = flagged.groupby(["model", "dataset", "method", "flag"]).agg(
        rows=("image_id", "size"), images=("image_id", "nunique"), excluded=("excluded", "sum")
    )
    summary = table(
        ["model", "dataset", "method", "flag", "rows", "images", "left out of the means"],
        [[*k, Cell(str(r.rows), str(r.rows), "num"), Cell(str(r.images), str(r.images), "num"),
          Cell(str(int(r.excluded)), str(int(r.excluded)), "num")]
         for k, r in zip(counts.index, counts.itertuples(index=False))],
    )  # fmt: skip
    shown = flagged.head(MAX_FLAGGED)
    listing = table(
        ["model", "dataset", "method", "image", "metric", "flag", "value"],
        [
            [r.model, r.dataset, r.method, r.image_id, r.metric, r.flag, _value(r.value)]
            for r in shown.itertuples(index=False)
        ],
    )
    more = len(flagged) - len(shown)
    tail = f'<p class="muted small">and {more} more row(s) (scores_all.csv).</p>' if more else ""
    return (
        f"<h3>Flagged images ({flagged['image_id'].nunique()} image(s), {len(flagged)} row(s))</h3>"
        "<p class=small>A map that was non-finite or constant (<code>nonfinite_map</code>, "
        "<code>constant_map</code>) is left out of every mean, interval and test; other flags "
        "mark a score the metric found degenerate (kept unless it is not a number).</p>"
        f"{summary}<details><summary>Every flagged row</summary>{listing}{tail}</details>"
    )


def _value(v) -> Cell:
    f = float(v)
    return Cell("—" if not np.isfinite(f) else f"{f:.4g}", repr(f) if np.isfinite(f) else "", "num")
