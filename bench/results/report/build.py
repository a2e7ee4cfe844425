"""One report page per study: the sections in order, into one self-contained HTML file."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.engine.io import atomic_write_text
from bench.results.figure_base import Loaded
from bench.results.report.data import N_IMAGES, Study, gather
from bench.results.report.overview import problems_section, run_section
from bench.results.report.page import Section, document, esc
from bench.results.report.pictures import curves_section, saliency_section
from bench.results.report.protocols import protocol_of, render
from bench.results.report.significance import agreement_section, significance_section
from bench.results.report.tables import class_section, tables_section, throughput_section

#: The file a sweep's report is written to (by the sweep's end, ``bench-collate --out`` and
#: ``bench-report`` by default).
REPORT = "report.html"


def render_study(study: Study, title: str | None = None) -> str:
    """The report of ``study`` as one HTML document (see :mod:`bench.results.report`)."""
    metrics = sorted(study.rows["metric"].unique()) if not study.rows.empty else []
    protocols = protocol_of(metrics)
    sections = [
        run_section(study),
        tables_section(study, protocols),
        significance_section(study),
        agreement_section(study),
        curves_section(study),
        saliency_section(study),
        class_section(study),
        throughput_section(study),
    ]
    sections.append(problems_section(study))  # last: the notes of the sections above
    proto = Section("protocols", "Metric protocols")
    if protocols:
        proto.body = (
            '<p class="small">From <code>docs/PROTOCOLS.md</code> of this release: the section of '
            f"each metric in the tables.</p>{render(protocols.values())}"
        )
    else:
        proto.missing = "No protocol shown: docs/PROTOCOLS.md is not available here, or names no metric of the tables."
    sections.append(proto)
    left_out = len(study.collation.incomplete)
    flagged = study.rows["flag"].fillna("").astype(str).ne("").sum() if "flag" in study.rows else 0
    banner = ""
    if left_out or flagged or study.collation.skipped:
        what = []
        if left_out:
            what.append(f"{left_out} job(s) did not complete")
        if study.collation.skipped:
            what.append(f"{len(study.collation.skipped)} unreadable image(s) skipped")
        if flagged:
            what.append(f"{flagged} flagged row(s)")
        banner = (
            f'<p class="banner">{esc("; ".join(what))}: see <a href="#problems">Problems</a>.</p>'
        )
    where = ", ".join(str(r) for r in study.roots)
    subtitle = f"{esc(where)} · made {esc(study.created)} · attribution-bench"
    return document(title or "Attribution benchmark report", subtitle, sections, banner)


@dataclass
class Written:
    """A report written: where, how long it took, and what it rests on."""

    path: Path
    seconds: float
    jobs: int  #: completed jobs shown
    incomplete: int  #: jobs that did not complete (listed on the page)


def write_report(
    roots: Sequence[str | Path],
    out: str | Path | None = None,
    n_images: int = N_IMAGES,
    from_cache: bool = True,
    title: str | None = None,
    loaded: Loaded | None = None,
) -> Written:
    """Write the report of the jobs under ``roots`` to ``out`` (default:
    ``<first root>/report.html``), atomically (``loaded``: the jobs and collation of ``roots``
    when the caller has them already)."""
    start = time.perf_counter()
    study = gather(roots, n_images, from_cache, loaded)
    text = render_study(study, title)
    path = Path(out) if out is not None else Path(roots[0]) / REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    seconds = time.perf_counter() - start
    return Written(path, seconds, len(study.jobs), len(study.collation.incomplete))
