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


def test_summary_cells_are_the_mean_and_the_bootstrap_interval_of_the_statistics_module():
    from scipy import stats as sps

    rows = long_rows()
    summary = summarise(rows)
    table = format_table(summary)
    # the interval is scipy's BCa bootstrap (seed 0, 9999 resamples) of the sorted values
    v = np.sort(rows.query("method == 'gradcam' and metric == 'deletion'")["value"].to_numpy())
    ref = sps.bootstrap(
        (v,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(0)
    ).confidence_interval
    cell = f"0.200 [{ref.low:.3f}, {ref.high:.3f}]"
    assert f"| m | d | gradcam | 3 | {cell} | " in table
    got = summary.set_index(["method", "metric"]).loc[("gradcam", "deletion")]
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert got["ci_method"] == "BCa"
    # a method with no score on a metric shows a dash, not 'nan'; one value has no interval
    assert "| m | d | random | 3 | 0.600 [" in table and "| — |\n" in table
    assert "| 0.250 |" in table and "±" not in table
    # cells on fewer than 10 images are warned about under the table
    assert table.splitlines()[-1].startswith("WARNING: 5 cell(s) rest on fewer than 10 images")


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
