"""The statistics of every number the tool prints or draws: pure functions over the long rows of
:func:`bench.results.collate.collate` (the console table, ``summary.*``, the paper tables, the
figures and the report all come through here; there is no other interval or test).

Every function takes a DataFrame with the columns ``model, dataset, method, metric, image_id,
target, value`` (and, where present, ``flag``, ``direction``, ``aggregate``) and returns a new
DataFrame; nothing here reads or writes files.

* :func:`bootstrap_ci` / :func:`cell_table` — the mean over images with a seeded 95% bootstrap
  interval (Efron 1979; BCa, Efron 1987, by ``scipy.stats.bootstrap``), clipped to the score's
  range the metric class declares (:meth:`bench.metrics.base.Metric.range_of`, carried by the
  rows); flagged and NaN rows counted, not averaged; :func:`curve_band` the same interval per
  step of a curve.
* :func:`rank_methods`, :func:`mean_ranks`, :func:`rank_agreement` — direction-aware ranks of
  methods per metric (1 = best, ties averaged) and Kendall's tau between metrics over methods.
* :func:`paired_test`, :func:`pairwise_tests`, :func:`friedman_tests`, :func:`holm` — paired
  comparisons over the same images: Wilcoxon signed-rank (Wilcoxon 1945) with the matched-pairs
  rank-biserial correlation, Friedman's test (Friedman 1937) with Kendall's W, Holm's step-down
  correction (Holm 1979); a ``better`` method only where the corrected p is below
  :data:`ALPHA`.
* :func:`tied_best`, :func:`average_ranks`, :func:`critical_difference` — the cells that tie the
  best of their column by those tests, and average ranks over images with Nemenyi's critical
  difference (Demšar 2006) for the report's critical-difference diagram.

Cells on fewer than :data:`MIN_IMAGES` images and rank agreements over fewer than
:data:`MIN_METHODS` methods carry a warning in their ``note``.

The submodules: :mod:`.rows` (the columns and thresholds), :mod:`.intervals`, :mod:`.cells`,
:mod:`.ranks`, :mod:`.paired` and :mod:`.posthoc`; every name is imported here, so ``stats.cell_table`` and
``from bench.results.stats import ...`` read as before.
"""

from __future__ import annotations

from bench.results.stats.cells import (
    cell_table,
    class_cells,
    class_means,
    usable,
)
from bench.results.stats.intervals import (
    bootstrap_batch,
    bootstrap_ci,
    curve_band,
    few_images,
    interval_text,
    metric_key,
    metric_range,
    score_ranges,
)
from bench.results.stats.paired import (
    better_of,
    complete_blocks,
    friedman_tests,
    holm,
    paired_test,
    paired_values,
    pairwise_tests,
)
from bench.results.stats.posthoc import average_ranks, critical_difference, tested, tied_best
from bench.results.stats.ranks import (
    few_methods,
    mean_ranks,
    rank_agreement,
    rank_methods,
)
from bench.results.stats.rows import (
    ALPHA,
    MIN_IMAGES,
    MIN_METHODS,
    NEEDED,
    PAIR_KEYS,
    Range,
    check_rows,
)

__all__ = [
    "ALPHA",
    "MIN_IMAGES",
    "MIN_METHODS",
    "NEEDED",
    "PAIR_KEYS",
    "Range",
    "average_ranks",
    "better_of",
    "bootstrap_batch",
    "bootstrap_ci",
    "cell_table",
    "check_rows",
    "class_cells",
    "class_means",
    "complete_blocks",
    "critical_difference",
    "curve_band",
    "few_images",
    "few_methods",
    "friedman_tests",
    "holm",
    "interval_text",
    "mean_ranks",
    "metric_key",
    "metric_range",
    "paired_test",
    "paired_values",
    "pairwise_tests",
    "rank_agreement",
    "rank_methods",
    "score_ranges",
    "tested",
    "tied_best",
    "usable",
]
