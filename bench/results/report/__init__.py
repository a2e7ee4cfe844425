"""The report: one self-contained HTML page per study, to open from a file, a CI artifact or an
e-mail (style, script and pictures inline; a Content-Security-Policy forbids every request).

    from bench.api import report
    report(["results/sweeps/A"], out="report.html")        # or: bench-report A --out report.html

Written at the end of every sweep and by ``bench-collate --out``. Its numbers come from the same
results code as the tables (:func:`bench.results.stats.cell_table` and the paired tests, as
``table.csv`` and ``paired.csv``). Sections, in order: what was run; per (model, dataset) the
method × metric table (sortable; best and tied-best by the paired tests; each metric's direction
and protocol); significance per metric (pairwise heat map, critical-difference diagram); rank
agreement; curves; a saliency grid; per-class results; throughput; problems (jobs that did not
complete, flagged or skipped images, warnings); the metrics' protocols. ``bench-regress --html``
writes the same kind of page for a regression check (:mod:`.regress`).
"""

from __future__ import annotations

from bench.results.report.build import REPORT, Written, render_study, write_report
from bench.results.report.data import Study, gather

__all__ = ["REPORT", "Study", "Written", "gather", "render_study", "write_report"]
