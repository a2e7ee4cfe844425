"""Every generated block of the docs, by name: the function that writes it from the committed
results (a :class:`.sources.Sources`) and returns its Markdown with the findings it states."""

from __future__ import annotations

from collections.abc import Callable

from . import benchmarks, catalogue, speed, stability
from .sources import Rendered, Sources

BLOCKS: dict[str, Callable[[Sources], Rendered]] = {
    "default-benchmark": benchmarks.default_benchmark,
    "scenes-table": benchmarks.scenes_table,
    "scenes-findings": benchmarks.scenes_findings,
    "paper-example-table": benchmarks.example_table,
    "paper-example-latex": benchmarks.example_latex,
    "paper-example-paired": benchmarks.example_paired,
    "catalogue-table": catalogue.cheap_table,
    "catalogue-findings": catalogue.cheap_findings,
    "catalogue-heavy-table": catalogue.heavy_table,
    "catalogue-heavy-findings": catalogue.heavy_findings,
    "catalogue-sanity-table": catalogue.sanity_table,
    "catalogue-sanity-findings": catalogue.sanity_findings,
    **speed.BLOCKS,
    **stability.BLOCKS,
}
