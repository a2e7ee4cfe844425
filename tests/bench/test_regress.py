"""bench-regress: a baseline, an unchanged run passes, a changed method fails by name, bad files exit 2."""

from __future__ import annotations

import gzip
import json
import shlex

import numpy as np
import pytest
from scipy import stats as sps

import bench.engine.run
from bench import ROOT
from bench.api import compose
from bench.cli.regress import main
from bench.core.profiling import cpu_model
from bench.methods.baselines import Random
from bench.methods.cam import GradCAM
from bench.results.regress import Tolerances, paired_p, read_baseline
from tests.bench._fixtures import road_like_pairs
from tests.conftest import run_bench

#: A small run: two methods, one faithfulness and one localisation metric, 8 images (RISE's
#: coarser dataset-evaluation step: 7 steps at 112 px).
SMALL = ("dataset.limit=8", "metric=[insertion,pointing_game]", "metric.insertion.step=1792")
COMMITTED = ROOT / "results" / "reference" / "regress" / "baseline.json"


def _job(folder, method: str, monkeypatch, random_maps: bool = False) -> None:
    """Run ``method`` in-process into ``folder`` (its rows are named after its config, as a
    ``bench`` launch names them). ``random_maps``: the method's config as it is, but its maps
    replaced by the random baseline's (what a broken implementation would give)."""
    with monkeypatch.context() as m:
        if random_maps:
            noise = Random(seed=0)
            m.setattr(GradCAM, "__call__", lambda self, model, x, t: noise(model, x, t))
        record = bench.engine.run.run(compose(f"method={method}", *SMALL, resolve=False), folder)
    assert record["status"] == "completed"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A baseline run (gradcam, random), the same run again, and one whose gradcam maps are
    random ones (same config, so the same cells: what a broken Grad-CAM would give)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("regress")
    try:
        for method in ("gradcam", "random"):
            _job(root / "base" / method, method, mp)
            _job(root / "again" / method, method, mp)
        _job(root / "broken" / "gradcam", "gradcam", mp, random_maps=True)
        _job(root / "broken" / "random", "random", mp)
    finally:
        mp.undo()
    baseline = root / "baseline.json"
    assert main(["--write-baseline", str(baseline), "--current", str(root / "base")]) == 0
    return root, baseline


def test_an_unchanged_run_passes_and_writes_a_report(runs, capsys):
    root, baseline = runs
    doc = read_baseline(baseline)
    assert len(doc["cells"]) == 4 and all(len(c["values"]) == 8 for c in doc["cells"])
    report = root / "report.md"
    code = main(
        ["--baseline", str(baseline), "--current", str(root / "again"), "--report", str(report)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("| ok |") == 4 and "no regression in 4 cells" in err
    text = report.read_text()
    assert text.startswith("## Attribution regression check") and "No regression" in text
    # the paired test agrees: no image moved
    assert main(["--baseline", str(baseline), "--current", str(root / "again"), "--paired"]) == 0


def test_a_method_whose_maps_turn_random_fails_by_name(runs, capsys):
    root, baseline = runs
    report = root / "broken.md"
    code = main(
        ["--baseline", str(baseline), "--current", str(root / "broken"), "--report", str(report)]
    )
    out, err = capsys.readouterr()
    assert code == 1
    failing = [ln for ln in err.splitlines() if ln.startswith("REGRESSED")]
    assert len(failing) == 2, err  # gradcam's insertion and pointing game; random is unchanged
    assert all("method=gradcam" in ln for ln in failing)
    assert {"metric=insertion", "metric=pointing_game"} == {
        w for ln in failing for w in ln.split() if w.startswith("metric=")
    }
    assert out.count("**REGRESSED**") == 2 and out.count("| ok |") == 2
    text = report.read_text()
    assert "2 regression(s)" in text and "`gradcam` / `insertion`" in text
    # a paired test over the 8 images finds the pointing game's fall significant at alpha 0.01
    code = main(["--baseline", str(baseline), "--current", str(root / "broken"), "--paired"])
    assert code == 1 and "paired p=" in capsys.readouterr().err
    # a tolerance wide enough lets it through; a run lacking a baseline cell fails (missing)
    loose = root / "loose.yaml"
    loose.write_text("default: {abs: 2.0}\nmetrics: {pointing_game: {abs: 2.0}}\n")
    assert (
        main(
            [
                "--baseline",
                str(baseline),
                "--current",
                str(root / "broken"),
                "--tolerance",
                str(loose),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["--baseline", str(baseline), "--current", str(root / "again" / "random")]) == 1
    assert "MISSING method=gradcam metric=insertion" in capsys.readouterr().err


def test_the_direction_decides_what_is_worse(runs, capsys):
    """The baseline run checked against the broken one as *its* baseline: gradcam improved."""
    root, _ = runs
    worse = root / "broken.json"
    assert main(["--write-baseline", str(worse), "--current", str(root / "broken")]) == 0
    assert main(["--baseline", str(worse), "--current", str(root / "base")]) == 0
    assert capsys.readouterr().out.count("| improved |") == 2


def _bad_files(tmp_path, baseline):
    good = json.loads(baseline.read_text())
    cells_without_values = {
        **good,
        "cells": [{k: v for k, v in good["cells"][0].items() if k != "values"}],
    }
    yield "missing", tmp_path / "nope.json", "cannot be read"
    (tmp_path / "empty.json").write_text("")
    yield "empty", tmp_path / "empty.json", "is not valid JSON"
    (tmp_path / "cut.json").write_text(baseline.read_text()[:200])
    yield "cut", tmp_path / "cut.json", "is not valid JSON"
    (tmp_path / "gz.json.gz").write_bytes(gzip.compress(b"{")[:-4])
    yield "bad gzip", tmp_path / "gz.json.gz", "is not valid JSON"
    (tmp_path / "other.json").write_text('{"rows": []}')
    yield "not a baseline", tmp_path / "other.json", "is not a baseline"
    (tmp_path / "v9.json").write_text(json.dumps({**good, "version": 9}))
    yield "version", tmp_path / "v9.json", "has version 9"
    (tmp_path / "novalues.json").write_text(json.dumps(cells_without_values))
    yield "no values", tmp_path / "novalues.json", "lacks values"
    (tmp_path / "strmean.json").write_text(
        json.dumps({**good, "cells": [{**good["cells"][0], "mean": "high"}]})
    )
    yield "text mean", tmp_path / "strmean.json", "not numbers"


def test_bad_input_exits_2_with_one_line(runs, tmp_path, capsys):
    root, baseline = runs
    for what, path, words in _bad_files(tmp_path, baseline):
        code = main(["--baseline", str(path), "--current", str(root / "again")])
        err = capsys.readouterr().err
        assert code == 2, what
        assert err.count("\n") == 1 and err.startswith("bench-regress: ") and words in err, (
            what,
            err,
        )
    bad_tolerance = [
        ("default: {abs: -1}", "default.abs=-1"),
        ("default: {absolute: 1}", "default.absolute is not a tolerance key"),
        ("metrics: [deletion]", "metrics is ['deletion']"),
        ("thresholds: {}", "'thresholds'"),
        ("default: {abs: [1", "not valid YAML"),
        ("default: {test: z}", "default.test=z is not valid; accepted: t, wilcoxon"),
    ]
    for text, words in bad_tolerance:
        (tmp_path / "tol.yaml").write_text(text)
        code = main(
            [
                "--baseline",
                str(baseline),
                "--current",
                str(root / "again"),
                "--tolerance",
                str(tmp_path / "tol.yaml"),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err, (text, err)
    for argv, words in [
        (["--current", str(tmp_path / "none")], "is not a folder"),
        (["--current", str(tmp_path)], "holds no completed job"),
        (["--current", str(root / "again"), "--alpha", "2"], "--alpha=2.0 is not valid"),
    ]:
        code = main(["--baseline", str(baseline), *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err, (argv, err)
    assert main(["--current", str(root)]) == 2  # argparse: one of --baseline / --write-baseline


def test_tolerances_default_and_per_metric(tmp_path):
    tol = Tolerances.load(None)
    assert tol.rule("deletion").abs == 0.02 and tol.rule("pointing_game.difficult").abs == 0.07
    assert tol.rule("deletion").allowed(0.9) == pytest.approx(0.045)  # rel 5% of 0.9 > 0.02
    tol = Tolerances.load(None, paired=True, abs=0.0)
    assert tol.rule("pointing_game").paired and tol.rule("pointing_game").abs == 0.0


def test_the_paired_wilcoxon_splits_zero_differences_as_the_code_states():
    """``paired: true, test: wilcoxon`` asks scipy's one-sided Wilcoxon with zero differences split
    between the signs (``zero_method="zsplit"``, as ``paired_p`` says) on "worse" = baseline minus
    current where higher is better; ROAD-like data with many zero differences and ties at the
    largest one, where the zero rule decides the answer."""
    worse, better = road_like_pairs()  # the current run's (b) scores are mostly the higher
    p = paired_p(better, worse, "higher", "wilcoxon")  # the current run fell from b to a
    ref = sps.wilcoxon(better - worse, alternative="greater", zero_method="zsplit")
    assert p == pytest.approx(ref.pvalue, rel=1e-12) and p == pytest.approx(0.0254, abs=1e-4)
    assert paired_p(-better, -worse, "lower", "wilcoxon") == pytest.approx(p, rel=1e-12)
    for other in ("wilcox", "pratt"):  # the data tell the zero rules apart
        alt = sps.wilcoxon(better - worse, alternative="greater", zero_method=other).pvalue
        assert abs(alt - p) > 0.005, other
    assert paired_p(worse, better, "higher", "wilcoxon") > 0.9  # the current run rose: not worse
    same = np.full(5, 0.5)
    assert paired_p(same, same, "higher", "wilcoxon") == 1.0  # every difference zero


def test_a_baseline_records_its_machine_and_an_older_one_reads_as_unrecorded(runs, tmp_path):
    """Issue 29: the baseline names the CPU its run was made on (the job record's), and the
    report names both machines; a baseline written before has no machine and still reads."""
    root, baseline = runs
    doc = read_baseline(baseline)
    assert doc["machine"]["cpu"] == cpu_model() and doc["machine"]["cores"] >= 1
    report = tmp_path / "report.md"
    args = ["--baseline", str(baseline), "--current", str(root / "again"), "--report", str(report)]
    assert main(args) == 0
    assert f"Baseline made on {cpu_model()}" in report.read_text()
    assert "docs/stability.md" not in report.read_text()  # the same CPU: nothing to explain
    old = {k: v for k, v in json.loads(baseline.read_text()).items() if k != "machine"}
    older = tmp_path / "older.json"
    older.write_text(json.dumps(old))
    args[1], args[-1] = str(older), str(tmp_path / "older.md")
    assert main(args) == 0
    text = (tmp_path / "older.md").read_text()
    assert "Baseline made on an unrecorded machine" in text and "docs/stability.md" in text


def test_a_gzip_baseline_round_trips(runs, tmp_path):
    root, _ = runs
    path = tmp_path / "b.json.gz"
    assert main(["--write-baseline", str(path), "--current", str(root / "base")]) == 0
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert main(["--baseline", str(path), "--current", str(root / "again")]) == 0


@pytest.mark.slow
def test_the_committed_baseline_passes_against_a_fresh_run_of_its_command(tmp_path, capsys):
    """The repository's own guard: results/reference/regress/ (README.md there has the command)."""
    doc = read_baseline(COMMITTED)
    words = shlex.split(doc["command"])
    assert words[0] == "bench" and words[1] == "-m", doc["command"]
    args = [w for w in words[1:] if not w.startswith("hydra.sweep.dir=")]
    res = run_bench([*args, f"hydra.sweep.dir={tmp_path / 'run'}"], timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert main(["--baseline", str(COMMITTED), "--current", str(tmp_path / "run")]) == 0, (
        capsys.readouterr().err
    )
