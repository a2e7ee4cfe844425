"""Collation tables: column choice and order, means-only cells, missing cells, bad column names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.results.collate import format_table, summarise


def long_rows() -> pd.DataFrame:
    rows = []
    for method, base in [("gradcam", 0.2), ("random", 0.6)]:
        for i, noise in enumerate([-0.1, 0.0, 0.1]):
            rows.append(
                dict(
                    model="m",
                    dataset="d",
                    method=method,
                    metric="deletion",
                    image_id=str(i),
                    target=0,
                    value=base + noise,
                    higher_is_better=False,
                )
            )
            rows.append(
                dict(
                    model="m",
                    dataset="d",
                    method=method,
                    metric="insertion",
                    image_id=str(i),
                    target=0,
                    value=1 - base + noise,
                    higher_is_better=True,
                )
            )
    # one metric that only gradcam has
    rows.append(
        dict(
            model="m",
            dataset="d",
            method="gradcam",
            metric="mprt",
            image_id="0",
            target=0,
            value=0.25,
            higher_is_better=False,
        )
    )
    return pd.DataFrame(rows)


def test_summary_cells_are_mean_and_t_half_width():
    summary = summarise(long_rows())
    table = format_table(summary)
    t = 4.302652729911275  # t(0.975, 2 dof)
    half = t * 0.1 / np.sqrt(3)
    assert f"| m | d | gradcam | 3 | 0.200 ± {half:.3f} | 0.800 ± {half:.3f} | 0.250 |" in table
    # a method with no score on a metric shows a dash, not 'nan'
    assert "| m | d | random | 3 | 0.600 ± " in table and table.rstrip().endswith("| — |")


def test_metrics_pick_and_order_columns_and_means_drop_the_ci():
    summary = summarise(long_rows())
    table = format_table(summary, metrics=["insertion", "deletion"], ci=False)
    lines = table.splitlines()
    assert lines[0] == "| model | dataset | method | n | insertion ↑ | deletion ↓ |"
    assert lines[2] == "| m | d | gradcam | 3 | 0.800 | 0.200 |"
    assert lines[3] == "| m | d | random | 3 | 0.400 | 0.600 |"
    assert "±" not in table and "mprt" not in table


def test_unknown_metric_column_names_the_value_and_the_accepted_ones():
    with pytest.raises(
        ValueError, match=r"road_abc not in the collated jobs; accepted: deletion, insertion, mprt"
    ):
        format_table(summarise(long_rows()), metrics=["deletion", "road_abc"])
