"""Paper tables: bootstrap intervals, ranks, paired tests, LaTeX/Markdown/CSV and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.api import compose
from bench.cli.collate import main as collate_main
from bench.core.errors import ConfigError
from bench.engine.run import run
from bench.results import stats
from bench.results.collate import collate
from bench.results.papers import table_latex, throughput, write_paper_tables
from tests.bench._fixtures import road_like_pairs


def rows(values: dict[tuple[str, str], list[float]], direction=None, **extra) -> pd.DataFrame:
    """Long rows: ``values[(method, metric)]`` is one score per image ``0..n-1``."""
    direction = direction or {}
    out = []
    for (method, metric), vs in values.items():
        for i, v in enumerate(vs):
            out.append(
                dict(
                    model="m",
                    dataset="d",
                    method=method,
                    metric=metric,
                    image_id=f"img-{i}",
                    target=i % 2,
                    value=v,
                    flag="",
                    direction=direction.get(metric, "higher"),
                    **extra,
                )
            )
    return pd.DataFrame(out)


# --- bootstrap intervals --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_bootstrap_interval_is_scipys_on_the_same_data_and_seed(method):
    v = np.random.default_rng(3).gamma(2.0, 0.1, size=40)
    got = stats.bootstrap_ci(v, n_resamples=2000, seed=7, method=method)
    ref = sps.bootstrap(  # of the values sorted: the interval does not depend on the rows' order
        (np.sort(v),), np.mean, n_resamples=2000, method=method, rng=np.random.default_rng(7)
    ).confidence_interval
    back = stats.bootstrap_ci(v[::-1], n_resamples=2000, seed=7, method=method)
    assert (back["ci_low"], back["ci_high"]) == (got["ci_low"], got["ci_high"])
    assert got["n"] == 40 and got["mean"] == pytest.approx(v.mean())
    assert got["ci_low"] == pytest.approx(ref.low, rel=1e-12)
    assert got["ci_high"] == pytest.approx(ref.high, rel=1e-12)
    assert got["ci_method"] == method
    # seeded: the same call gives the same interval
    assert stats.bootstrap_ci(v, n_resamples=2000, seed=7, method=method) == got


def test_intervals_stay_inside_the_score_range():
    # a pointing game that hits 2 of 30: the interval must stay in [0, 1]
    hits = np.r_[np.ones(2), np.zeros(28)]
    record = {"metrics": {"pointing_game": {"class": "PointingGame"}}}
    ranges = stats.score_ranges([record])
    assert ranges["pointing_game"] == (0.0, 1.0)
    for method in ("BCa", "percentile"):
        ci = stats.bootstrap_ci(hits, method=method, score_range=ranges["pointing_game"])
        assert 0.0 <= ci["ci_low"] <= ci["mean"] <= ci["ci_high"] <= 1.0
    # a bound the resampling would put outside a declared range is clipped to it
    v = np.linspace(0.0, 1.0, 11)
    ci = stats.bootstrap_ci(v, score_range=(0.45, 0.55))
    assert 0.45 <= ci["ci_low"] and ci["ci_high"] <= 0.55 and ci["mean"] == pytest.approx(0.5)
    # curve AUCs are bounded only when they score probabilities; jobs that disagree: no range
    prob = {"metrics": {"deletion": {"class": "Deletion", "settings": {"score": "probability"}}}}
    logit = {"metrics": {"deletion": {"class": "Deletion", "settings": {"score": "logit"}}}}
    assert stats.score_ranges([prob])["deletion"] == (0.0, 1.0)
    assert "deletion" not in stats.score_ranges([prob, logit])
    # what a record declares wins, key by key; an unknown class without a declaration: none
    declared = {"x": {"class": "Mine", "ranges": {"": [-2, 3], "part": [0, None], "open": None}}}
    got = stats.score_ranges([{"metrics": declared}])
    assert got == {"x": (-2, 3), "x.part": (0, None)}
    assert stats.score_ranges([{"metrics": {"x": {"class": "Mine"}}}]) == {}


def test_degenerate_samples_give_a_note_not_a_crash():
    assert np.isnan(stats.bootstrap_ci([])["mean"])
    one = stats.bootstrap_ci([0.3, np.nan])
    assert one["n"] == 1 and one["mean"] == 0.3 and np.isnan(one["ci_low"]) and one["note"]
    same = stats.bootstrap_ci([1.0] * 5)
    assert (same["ci_low"], same["ci_high"]) == (1.0, 1.0) and same["ci_method"] == "constant"
    with pytest.raises(ConfigError, match="accepted: BCa, percentile"):
        stats.bootstrap_ci([1.0, 2.0], method="t")


def test_cells_count_flagged_and_nan_rows_and_mark_the_best():
    df = rows(
        {
            ("good_method", "insertion"): [0.9, 0.8, 0.7, 0.8],
            ("bad_method", "insertion"): [0.1, 0.2, 0.3, 0.2],
            ("good_method", "deletion"): [0.1, 0.2, 0.1, 0.2],
            ("bad_method", "deletion"): [0.5, 0.4, np.nan, 0.5],
            ("good_method", "complexity"): [1.0, 2.0, 3.0, 4.0],
            ("bad_method", "complexity"): [5.0, 6.0, 7.0, 8.0],
        },
        direction={"deletion": "lower", "complexity": "none"},
    )
    df.loc[(df["method"] == "bad_method") & (df["image_id"] == "img-3"), "flag"] = "constant_map"
    df.loc[(df["method"] == "bad_method") & (df["image_id"] == "img-3"), "value"] = 99.0
    cells = stats.cell_table(df, n_resamples=999).set_index(["method", "metric"])
    bad = cells.loc[("bad_method", "deletion")]
    assert (bad["n"], bad["flagged"], bad["nan"]) == (2, 1, 1)
    assert bad["mean"] == pytest.approx(0.45)  # 99 and NaN not averaged
    assert cells.loc[("bad_method", "insertion"), "mean"] == pytest.approx(0.2)
    best = cells[cells["best"]].index.tolist()
    assert sorted(best) == [("good_method", "deletion"), ("good_method", "insertion")]


def test_per_class_cells_only_for_class_mean_metrics():
    df = rows({("a", "pointing_game"): [1, 0, 1, 1], ("a", "deletion"): [0.1, 0.2, 0.3, 0.4]})
    df["aggregate"] = np.where(df["metric"] == "pointing_game", "class_mean", "")
    per_class = stats.class_cells(df, n_resamples=999)
    assert set(per_class["metric"]) == {"pointing_game"}
    assert per_class.set_index("target")["mean"].to_dict() == {0: 1.0, 1: 0.5}
    # the protocol's class mean: unweighted, a class without pairs counting 0 (as summarise)
    df["num_classes"] = 4
    means = stats.class_means(df).iloc[0]
    assert (means["classes_scored"], means["num_classes"]) == (2, 4)
    assert means["class_mean"] == pytest.approx((1.0 + 0.5) / 4)
    from bench.results.collate import summarise

    ref = summarise(df).set_index("metric").loc["pointing_game", "class_mean"]
    assert means["class_mean"] == pytest.approx(ref)


# --- ranks ----------------------------------------------------------------------------------------


def _cells(means: dict[str, dict[str, float]], directions: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(model="m", dataset="d", method=meth, metric=met, direction=directions[met], mean=v)
            for met, by in means.items()
            for meth, v in by.items()
        ]
    )


def test_ranks_are_direction_aware_with_ties_averaged_and_tau_is_scipys():
    means = {
        "insertion": {"a": 0.9, "b": 0.7, "c": 0.7, "d": 0.2, "e": 0.5},
        "deletion": {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.6, "e": 0.4},
        "pointing": {"a": 0.8, "b": 0.9, "c": 0.3, "d": 0.1, "e": 0.6},
        "entropy": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0},
    }
    directions = {"insertion": "higher", "deletion": "lower", "pointing": "higher"}
    directions["entropy"] = "none"
    ranks = stats.rank_methods(_cells(means, directions))
    r = ranks.set_index(["metric", "method"])["rank"]
    assert r[("insertion", "a")] == 1 and r[("insertion", "b")] == r[("insertion", "c")] == 2.5
    assert r[("deletion", "a")] == 1 and r[("deletion", "d")] == 5
    assert "entropy" not in set(ranks["metric"])  # descriptive: not ranked
    mr = stats.mean_ranks(ranks).set_index("method")["mean_rank"]
    assert mr["a"] == pytest.approx((1 + 1 + 2) / 3)
    agree = stats.rank_agreement(ranks).set_index(["metric_a", "metric_b"])
    methods = list("abcde")
    for a, b in [("insertion", "deletion"), ("insertion", "pointing"), ("deletion", "pointing")]:
        sign = {m: (-1 if directions[m] == "higher" else 1) for m in (a, b)}
        x = [sign[a] * means[a][k] for k in methods]
        y = [sign[b] * means[b][k] for k in methods]
        ref = sps.kendalltau(x, y)
        assert agree.loc[(a, b), "tau"] == pytest.approx(ref.statistic)
        assert agree.loc[(a, b), "p"] == pytest.approx(ref.pvalue)
        assert agree.loc[(b, a), "tau"] == pytest.approx(ref.statistic)
    assert agree.loc[("deletion", "deletion"), "tau"] == pytest.approx(1.0)


# --- paired tests ---------------------------------------------------------------------------------


def test_paired_test_finds_a_real_difference_and_not_a_spurious_one():
    noise = np.random.default_rng(0).normal(0, 0.02, size=30)
    base = np.linspace(0.2, 0.6, 30)
    d = np.arange(1, 31) / 100 * np.where(np.arange(30) % 2, 1, -1)  # symmetric differences
    df = rows(
        {
            ("gradcam", "insertion"): list(base + 0.1 + noise),
            ("random", "insertion"): list(base),
            ("gradcam", "deletion"): list(base + d),
            ("random", "deletion"): list(base),
        },
        direction={"deletion": "lower"},
    )
    real = stats.paired_test(df, "gradcam", "random", "insertion")
    assert real["n_pairs"] == 30 and real["p"] < 0.01
    assert real["rank_biserial"] == pytest.approx(1.0) and real["median_diff"] > 0.05
    ref = sps.wilcoxon(df[df.method == "gradcam"].query("metric == 'insertion'")["value"].values
                       - base)  # fmt: skip
    assert real["p"] == pytest.approx(ref.pvalue)
    none = stats.paired_test(df, "gradcam", "random", "deletion")
    assert none["p"] > 0.2 and abs(none["rank_biserial"]) < 0.2
    # the rank-biserial correlation by hand: (R+ - R-) / (R+ + R-)
    ranks = sps.rankdata(np.abs(d))
    assert none["rank_biserial"] == pytest.approx(
        (ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum()
    )


def test_paired_test_drops_zero_differences_as_stated_on_road_like_ties():
    """ROAD-like scores (sevenths: many ties, zero differences, ties at the largest difference):
    the test is scipy's Wilcoxon with zero differences dropped (``zero_method="wilcox"``, what
    the docstring and the README state), not Pratt's or zsplit, which keep them and give another
    answer on these data."""
    a, b = road_like_pairs()
    df = rows({("a", "road_morf"): list(a), ("b", "road_morf"): list(b)}, {"road_morf": "lower"})
    got = stats.paired_test(df, "a", "b", "road_morf")
    d = a - b
    ref = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    assert got["n_pairs"] == 71 and got["n_nonzero"] == 33 == int((d != 0).sum())
    assert got["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert got["p"] == pytest.approx(0.3746, abs=1e-4)
    for other in ("pratt", "zsplit"):  # the data tell the zero rules apart
        assert abs(sps.wilcoxon(a, b, zero_method=other).pvalue - got["p"]) > 0.3
    # effect size over the non-zero differences only; means and median over all pairs
    nz = d[d != 0]
    ranks = sps.rankdata(np.abs(nz))
    assert ranks.max() == pytest.approx(27.0)  # the 13 tied largest share ranks 21..33
    assert got["rank_biserial"] == pytest.approx(
        (ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum()
    )
    assert got["rank_biserial"] < 0  # b scores higher on the non-zero pairs
    assert got["mean_diff"] == pytest.approx(d.mean()) and got["median_diff"] == 0.0


def test_paired_test_joins_on_images_and_handles_degenerate_cases():
    df = rows({("a", "pg"): [1, 0, 1, 1], ("b", "pg"): [1, 0, 1, 1], ("c", "pg"): [0, -1]})
    zero = stats.paired_test(df, "a", "b", "pg")
    assert zero["n_pairs"] == 4 and np.isnan(zero["p"]) and "zero" in zero["note"]
    few = stats.paired_test(df, "a", "c", "pg")  # only img-0 and img-1 in common
    assert few["n_pairs"] == 2 and few["n_nonzero"] == 2 and few["p"] == pytest.approx(0.5)
    one = stats.paired_test(df.drop(index=df.index[(df.method == "c") & (df.image_id == "img-1")]),
                            "a", "c", "pg")  # fmt: skip
    assert one["n_pairs"] == 1 and np.isnan(one["p"]) and "too few" in one["note"]
    empty = stats.paired_test(df, "a", "nobody", "pg")
    assert empty["n_pairs"] == 0 and np.isnan(empty["p"]) and empty["note"]
    with pytest.raises(ConfigError, match="two different methods"):
        stats.paired_test(df, "a", "a", "pg")


def test_holm_matches_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06,
    # 1*0.04=0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02, np.nan])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])
    assert np.isnan(stats.holm([np.nan])).all()


def test_pairwise_tests_are_holm_corrected_per_metric_and_friedman_is_scipys():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, size=20)
    df = rows(
        {
            ("a", "insertion"): list(base + 0.2 + rng.normal(0, 0.02, 20)),
            ("b", "insertion"): list(base + 0.1 + rng.normal(0, 0.02, 20)),
            ("c", "insertion"): list(base + rng.normal(0, 0.02, 20)),
        }
    )
    pairs = stats.pairwise_tests(df)
    assert len(pairs) == 3
    np.testing.assert_allclose(pairs["p_holm"], stats.holm(pairs["p"]))
    assert set(pairs["better"]) == {"a", "b"}
    fr = stats.friedman_tests(df).iloc[0]
    wide = [df[df.method == m]["value"].to_numpy() for m in "abc"]
    ref = sps.friedmanchisquare(*wide)
    assert fr["n_blocks"] == 20 and fr["p"] == pytest.approx(ref.pvalue)
    assert fr["kendall_w"] == pytest.approx(ref.statistic / (20 * 2))
    assert fr["mean_ranks"].startswith("a=1.00")
    two = stats.friedman_tests(df[df.method != "c"]).iloc[0]
    assert np.isnan(two["p"]) and "3 or more" in two["note"]


def test_bad_rows_are_one_line_errors(tmp_path):
    with pytest.raises(
        ConfigError, match=r"no column\(s\) dataset, method, metric, image_id"
    ) as err:
        write_paper_tables(pd.DataFrame({"model": ["m"], "value": [1.0]}), [], tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="accepted: a bench.results.collate.Collation"):
        write_paper_tables([1, 2], [], tmp_path)


# --- files ----------------------------------------------------------------------------------------


def _parse_tex_cells(tex: str) -> dict[str, list[str]]:
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    out = {}
    for line in body.strip().splitlines():
        cells = [c.strip() for c in line.rstrip("\\ ").split("&")]
        out[cells[0]] = cells[1:]
    return out


def test_latex_is_booktabs_escaped_and_its_numbers_are_the_csv_values(tmp_path):
    df = rows(
        {
            ("grad_cam", "pointing_game"): [1, 1, 0, 1, 1, 1],
            ("my_random", "pointing_game"): [0, 1, 0, 0, 0, 1],
            ("grad_cam", "road_abc"): [0.3, 0.2, 0.4, 0.5, 0.3, 0.2],
            ("my_random", "road_abc"): [0.1, 0.0, 0.1, 0.2, 0.05, 0.15],
        }
    )
    written = write_paper_tables(df, [], tmp_path, n_resamples=999)
    tex = written["table_m_d.tex"].read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}"):
        assert rule in tex
    assert "grad\\_cam" in tex and "pointing\\_game $\\uparrow$" in tex and "road\\_abc" in tex
    assert not re.search(r"[^\\]_", tex.split("\n", 1)[1])  # every underscore escaped
    csv = pd.read_csv(written["table.csv"])
    got = _parse_tex_cells(tex)
    metrics = ["pointing_game", "road_abc"]
    for method in ("grad_cam", "my_random"):
        cells = got[method.replace("_", "\\_")]
        assert cells[0] == "6" and cells[1] == "0"  # n, excluded
        for metric, text in zip(metrics, cells[2:]):
            r = csv[(csv.method == method) & (csv.metric == metric)].iloc[0]
            numbers = [float(x) for x in re.findall(r"-?\d+\.\d+", text)]
            assert numbers == [round(r["mean"], 3), round(r["ci_low"], 3), round(r["ci_high"], 3)]
            assert text.startswith("\\textbf{") == bool(r["best"])
    assert csv[csv.metric == "pointing_game"]["ci_high"].max() <= 1.0
    md = written["table.md"].read_text()
    assert "| grad_cam | 6 | 0 | **0.833" in md
    # the Styler path alone
    assert table_latex(stats.cell_table(df, n_resamples=99)).count("\\textbf{") == 2


JOB = ("dataset.limit=6", "batch_size=2", "metric=[deletion,pointing_game]")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paper_sweep")
    for i, method in enumerate(("random", "gradient")):
        record = run(compose(f"method={method}", *JOB, resolve=False), root / f"{i}_{method}")
        assert record["status"] == "completed"
    return root


PAPER_FILES = {
    "table.csv", "table.md", "table_shapes_cnn_shapes.tex", "by_model.csv", "by_model.md",
    "by_dataset.csv", "by_dataset.md", "by_class.csv", "by_class.md", "class_means.csv", "ranks.csv",
    "mean_ranks.csv", "rank_agreement.csv", "ranks.md", "paired.csv", "friedman.csv",
    "paired.md", "throughput.csv", "throughput.md",
}  # fmt: skip
SUMMARY_FILES = {"scores_all.csv", "summary.csv", "summary.md", "summary.png"}


def test_cli_out_writes_every_file_and_no_paper_skips_them(sweep, tmp_path, capsys):
    out = tmp_path / "paper"
    assert collate_main([str(sweep), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| shapes_cnn | shapes |" in captured.out and "paper table file(s)" in captured.err
    # the study's report comes with the tables (issue 24)
    assert {p.name for p in out.iterdir()} == PAPER_FILES | SUMMARY_FILES | {"report.html"}
    for name in PAPER_FILES:
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert set(table["n"]) == {6} and len(table) == 4
    pg = table[table.metric == "pointing_game"]
    assert pg["ci_low"].min() >= 0 and pg["ci_high"].max() <= 1
    by_class = pd.read_csv(out / "by_class.csv")
    assert set(by_class["metric"]) == {"pointing_game"}
    thr = pd.read_csv(out / "throughput.csv")
    assert set(thr["images"]) == {6} and (thr["forward_passes_per_image"] > 0).all()
    assert "metric.deletion_s_per_image" in thr and (thr["device"] == "cpu").all()
    paired = pd.read_csv(out / "paired.csv")
    assert len(paired) == 2 and (paired["n_pairs"] == 6).all()

    bare = tmp_path / "bare"
    assert collate_main([str(sweep), "--out", str(bare), "--no-paper", "--no-report"]) == 0
    assert {p.name for p in bare.iterdir()} == SUMMARY_FILES


def test_python_api_matches_the_cli_and_reads_records(sweep, tmp_path):
    collation = collate([sweep])
    written = write_paper_tables(collation, None, tmp_path)
    assert set(written) == PAPER_FILES and all(p.is_file() for p in written.values())
    from bench.results.collate import read_record

    records = {str(j): read_record(Path(j)) for j in collation.rows["job"].unique()}
    thr = throughput(records, collation.rows)
    again = throughput(list(records.values()))  # without rows: the records' own labels
    assert thr["wall_s"].sum() == pytest.approx(again["wall_s"].sum())
    pd.testing.assert_frame_equal(
        pd.read_csv(written["table.csv"]),
        pd.read_csv(write_paper_tables(collation.rows, records, tmp_path / "b")["table.csv"]),
    )
