"""What the statistics read: the columns of the long rows, what a paired observation is, and
the thresholds below which the tables warn."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bench.core.errors import ConfigError

#: What a paired observation is: the same image (and explained class) of one model and dataset.
PAIR_KEYS = ["model", "dataset", "image_id", "target"]
#: The columns every function here needs.
NEEDED = ["model", "dataset", "method", "metric", "image_id", "target", "value"]

#: The fewest images a cell's interval and tests should rest on, and the fewest methods a rank
#: agreement should: below them the tables say so in a visible warning.
MIN_IMAGES = 10
MIN_METHODS = 4
#: The level below which a Holm-corrected p names a ``better`` method.
ALPHA = 0.05

Range = tuple[float | None, float | None]


def check_rows(df: pd.DataFrame, needed: Sequence[str] = NEEDED) -> None:
    """Raise a one-line :class:`ConfigError` when ``df`` lacks a column the statistics need."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(
            f"rows have no column(s) {', '.join(missing)}; accepted: the long rows of "
            f"bench.results.collate.collate(...).rows ({', '.join(needed)})."
        )
