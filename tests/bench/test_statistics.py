"""One statistics module (issue 23, item 4): every table and figure takes its interval, its
``better`` column and its warnings from :mod:`bench.results.stats`.

- the interval is the bootstrap of :func:`bench.results.stats.bootstrap_ci`, clipped to the range
  the metric class declares (recorded per score key, carried by the collated rows): at n = 2,
  where the old Student-t interval left the range (deletion ``0.301 ± 2.465``), it stays inside
  for every metric of ``conf/metric``;
- ``better`` names a method only where the Holm-corrected p is below the level, by the sign of the
  test's statistic; at p = 1 it is empty;
- cells on fewer than 10 images and rank agreements over fewer than 4 methods carry a warning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.api import compose
from bench.config.overrides import options
from bench.results import stats
from bench.results.collate import format_table, summarise
from bench.results.figures import rank_agreement as figure_rank_agreement
from bench.results.papers import write_paper_tables


def _declared() -> list:
    """(metric config, score key, class range, the record's metric info) of every conf/metric."""
    out = []
    for name in options("metric"):
        node = OmegaConf.to_container(compose(f"metric=[{name}]").metric[name])
        metric = instantiate(node)
        # the record's metrics.<name> entry, as bench.engine.build writes it
        info = {"class": type(metric).__name__, **metric.meta(), "settings": metric.settings()}
        for key, rng in metric.ranges().items():
            out.append(pytest.param(name, key, rng, info, id=f"{name}.{key}" if key else name))
    return out


def _rows(
    metric: str, values, rng, method: str = "m", direction: str = "higher", **extra
) -> pd.DataFrame:
    lo, hi = (np.nan, np.nan) if rng is None else rng
    return pd.DataFrame(
        dict(
            model="net", dataset="d", method=method, metric=metric,
            image_id=[str(i) for i in range(len(values))], target=0, value=values,
            direction=direction, range_low=np.nan if lo is None else lo,
            range_high=np.nan if hi is None else hi, **extra,
        )
    )  # fmt: skip


@pytest.mark.parametrize("name,key,rng,info", _declared())
def test_intervals_stay_in_the_declared_range_at_two_images(name, key, rng, info):
    # the record's declaration and this release's class agree, key by key
    assert stats.metric_range(info, key) == rng
    legacy = {k: v for k, v in info.items() if k != "ranges"}  # a record written before ranges
    assert stats.metric_range(legacy, key) == rng
    if rng is None:
        pytest.skip(f"{name}.{key} is unbounded: no range to keep")
    lo, hi = rng
    base = lo if lo is not None else hi - 1.0
    width = (hi - lo) if lo is not None and hi is not None else 1.0
    side = 1.0 if lo is not None else -1.0
    # two images at one end of the range: the t-interval's half width, 12.7 s / sqrt(2), left it
    for values in ([base, base + side * 0.05 * width], [base, base + side * 0.9 * width]):
        metric = f"{name}.{key}" if key else name
        cell = summarise(_rows(metric, values, rng)).iloc[0]
        assert cell["n"] == 2 and cell["mean"] == pytest.approx(np.mean(values))
        assert np.isfinite(cell["ci_low"]) and np.isfinite(cell["ci_high"])
        assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
        assert lo is None or cell["ci_low"] >= lo, (metric, values, cell["ci_low"])
        assert hi is None or cell["ci_high"] <= hi, (metric, values, cell["ci_high"])
        assert "only 2 image(s)" in cell["note"]


def test_the_issues_deletion_case_stays_in_zero_one_in_every_table(tmp_path):
    """Deletion at n = 2, 0.301 with the t-interval's ± 2.465 (an axis from -2 to 3): the console
    table, summary.csv and the paper tables give one interval, inside [0, 1]."""
    rows = _rows("deletion", [0.107, 0.495], (0.0, 1.0), direction="lower")
    summary = summarise(rows)
    cell = summary.iloc[0]
    assert 0.0 <= cell["ci_low"] <= cell["ci_high"] <= 1.0
    table = format_table(summary)
    assert f"{cell['mean']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]" in table
    assert "WARNING: 1 cell(s) rest on fewer than 10 images (n = 2)" in table
    written = write_paper_tables(rows, [], tmp_path)
    paper = pd.read_csv(written["table.csv"]).iloc[0]
    assert (paper["ci_low"], paper["ci_high"]) == pytest.approx((cell["ci_low"], cell["ci_high"]))
    assert "WARNING: 1 cell(s) rest on fewer than 10 images" in written["table.md"].read_text()


def _pairs(a: list[float], b: list[float], metric="deletion", direction="lower") -> pd.DataFrame:
    return pd.concat(
        [
            _rows(metric, a, (0.0, 1.0), method="gradcam", direction=direction),
            _rows(metric, b, (0.0, 1.0), method="gradient", direction=direction),
        ],
        ignore_index=True,
    )


def test_better_is_empty_where_the_test_finds_nothing():
    # the issue's case: 6 images, Grad-CAM lower (better) on 4 by a little, higher on 2 by a lot;
    # the rank-biserial sign favours gradient, the median difference Grad-CAM, p is far from 0.05
    gradient = [0.50, 0.50, 0.50, 0.50, 0.20, 0.20]
    gradcam = [0.48, 0.47, 0.46, 0.45, 0.60, 0.70]
    (r,) = stats.pairwise_tests(_pairs(gradcam, gradient)).to_dict("records")
    assert r["median_diff"] < 0 < r["rank_biserial"] and r["p_holm"] > 0.5
    assert r["better"] == ""
    # p = 1: symmetric differences
    (r,) = stats.pairwise_tests(
        _pairs([0.1, 0.5, 0.2, 0.6, 0.3, 0.7], [0.5, 0.1, 0.6, 0.2, 0.7, 0.3])
    ).to_dict("records")
    assert r["p_holm"] == pytest.approx(1.0) and r["better"] == ""
    assert "only 6 image(s)" in r["note"]


def test_better_names_the_method_where_holm_p_is_below_the_level():
    rng = np.random.default_rng(0)
    gradient = rng.uniform(0.3, 0.6, 20)
    gradcam = gradient - rng.uniform(0.01, 0.1, 20)  # lower on every image: better for deletion
    (r,) = stats.pairwise_tests(_pairs(list(gradcam), list(gradient))).to_dict("records")
    assert r["p_holm"] < 0.05 and r["better"] == "gradcam" and r["note"] == ""
    # the same numbers on a higher-is-better metric favour the other method
    (r,) = stats.pairwise_tests(
        _pairs(list(gradcam), list(gradient), "insertion", "higher")
    ).to_dict("records")
    assert r["better"] == "gradient"
    # a level the p does not reach: tied
    (r,) = stats.pairwise_tests(_pairs(list(gradcam), list(gradient)), alpha=1e-9).to_dict(
        "records"
    )
    assert r["better"] == ""


def test_rank_agreement_is_one_computation_and_warns_below_four_methods():
    rows = []
    for i, method in enumerate(["a", "b", "c"]):
        for metric, value in (("deletion", 0.1 * i), ("insertion", 0.9 - 0.1 * i)):
            rows.append(dict(model="net", dataset="d", method=method, metric=metric,
                             mean=value, direction="lower" if metric == "deletion" else "higher"))  # fmt: skip
    summary = pd.DataFrame(rows)
    agree = stats.rank_agreement(stats.rank_methods(summary))
    off = agree[agree["metric_a"] != agree["metric_b"]]
    assert (off["tau"] == 1.0).all() and (off["n_methods"] == 3).all()
    assert off["note"].str.contains("only 3 method(s)", regex=False).all()
    # the figure's matrix is the same computation
    tau = figure_rank_agreement(summary)[("net", "d")]
    assert tau.loc["deletion", "insertion"] == 1.0 and "only 3 method(s)" in tau.attrs["note"]
    four = pd.concat([summary, summary.head(2).assign(method="e", mean=[0.5, 0.1])])
    assert (stats.rank_agreement(stats.rank_methods(four))["note"] == "").all()


def test_curve_bands_are_the_bootstrap_of_the_tables():
    from scipy import stats as sps

    curves = np.random.default_rng(1).uniform(0, 1, size=(12, 5))
    curves[:, 0] = 1.0  # a step where every image agrees: no band
    lo, hi = stats.curve_band(curves)
    assert lo[0] == hi[0] == 1.0
    ref = sps.bootstrap(
        (curves[:, 1:],), np.mean, axis=0, n_resamples=999, method="BCa",
        rng=np.random.default_rng(0),
    ).confidence_interval  # fmt: skip
    np.testing.assert_allclose(lo[1:], ref.low, rtol=1e-12)
    np.testing.assert_allclose(hi[1:], ref.high, rtol=1e-12)
    assert stats.curve_band(curves[:1]) is None


# --- what the report draws from the tests (bench/results/stats/posthoc.py) -------------------------


def _long(values: dict[str, list[float]], direction: str = "higher") -> pd.DataFrame:
    """Rows of one (model, dataset, metric): ``values[method]`` one score per image."""
    return pd.DataFrame(
        [
            dict(
                model="m",
                dataset="d",
                method=method,
                metric="x",
                image_id=f"i{i}",
                target=0,
                value=v,
                flag="",
                direction=direction,
            )  # fmt: skip
            for method, vs in values.items()
            for i, v in enumerate(vs)
        ]
    )


def test_critical_difference_is_demsars_table_over_the_square_root():
    # Demsar (2006), Table 5(a): q_0.05 for k = 2..5 is 1.960, 2.343, 2.569, 2.728
    for k, q in ((2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728)):
        n = 30
        assert stats.critical_difference(k, n) == pytest.approx(
            q * np.sqrt(k * (k + 1) / (6 * n)), abs=2e-3
        )
    assert np.isnan(stats.critical_difference(1, 10)) and np.isnan(stats.critical_difference(3, 0))


def test_average_ranks_are_friedmans_mean_ranks_and_direction_aware():
    rng = np.random.default_rng(0)
    base = rng.normal(size=20)
    values = {"a": base + 2.0, "b": base + 1.0, "c": base + rng.normal(scale=0.1, size=20)}
    df = _long(values)
    avg = stats.average_ranks(df).set_index("method")
    assert avg.loc["a", "avg_rank"] == 1.0 and avg.loc["b", "avg_rank"] == 2.0
    assert (avg["n_blocks"] == 20).all() and (avg["k"] == 3).all()
    text = stats.friedman_tests(df)["mean_ranks"].iloc[0]
    assert text == "; ".join(f"{m}={avg.loc[m, 'avg_rank']:.2f}" for m in "abc")
    low = stats.average_ranks(_long(values, "lower")).set_index("method")["avg_rank"]
    assert low["a"] == 3.0 and low["b"] == 2.0  # lower is better: the order turns over
    assert stats.average_ranks(_long(values, "none")).empty  # descriptive: no rank


def test_tied_best_marks_only_methods_the_paired_test_cannot_tell_from_the_best():
    rng = np.random.default_rng(1)
    base = rng.normal(size=30)
    df = _long({"best": base + 1.0, "close": base + 1.0 + rng.normal(scale=0.01, size=30),
                "far": base - 1.0})  # fmt: skip
    cells = stats.cell_table(df, n_resamples=199)
    pairs = stats.pairwise_tests(df)
    tied = stats.tied_best(cells, pairs)
    by = dict(zip(cells["method"], zip(cells["best"], tied)))
    winner = "best" if by["best"][0] else "close"
    other = "close" if winner == "best" else "best"
    assert by[winner] == (True, False) and by[other] == (False, True)
    assert by["far"] == (False, False)
    # a pair never tested (too few images) ties nothing
    small = _long({"a": [1.0], "b": [0.0]})
    c2 = stats.cell_table(small, n_resamples=99)
    assert not stats.tied_best(c2, stats.pairwise_tests(small)).any()
