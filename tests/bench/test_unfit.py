"""A method that cannot apply to the model (``bench.core.errors.Unfit``): named explicitly, the job
fails in one line; in a glob sweep over methods (``unfit=skip``) it is skipped, its record says why,
and collation lists it (NOT APPLICABLE) without counting it as incomplete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.api import compose
from bench.cli.collate import main as collate_main
from bench.config.overrides import check_overrides
from bench.config.validate import validate
from bench.core.errors import ConfigError, Unfit
from bench.engine.io import RECORD, SCORES, SUPERSEDED
from bench.engine.run import config_hash, run
from bench.results.collate import collate
from tests.conftest import run_bench

JOB = ("dataset.limit=2", "batch_size=2", "metric=[sparseness]")
#: The attention-family methods: none applies to the embedded CNN.
ATTENTION = ("attention_rollout", "raw_attention", "vit_gradcam")
REASON = "method RawAttention cannot apply to model shapes_cnn (ShapesCNN) (needs attention): "


def job(out: Path, *overrides: str) -> dict:
    """One tiny job in-process (the real composition and runner)."""
    return run(compose(*JOB, *overrides, resolve=False), out)


def collate_cli(capsys, *args: object) -> tuple[int, str, str]:
    code = collate_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unfit_is_fail_by_default_and_checked():
    assert compose(resolve=False).unfit == "fail"
    with pytest.raises(ConfigError, match=r"^unfit=maybe is not valid; accepted: fail, skip\.$"):
        validate(compose("unfit=maybe", resolve=False), construct=False)


def test_unfit_is_left_out_of_the_config_hash():
    assert config_hash(compose(resolve=False)) == config_hash(compose("unfit=skip", resolve=False))


@pytest.mark.parametrize(
    "argv,added",
    [
        (["-m", "method=glob(*)"], True),
        (["-m", "method=glob(*cam*,exclude=[cam])", "dataset.limit=2"], True),
        (["-m", "method=glob(*)", "unfit=fail"], False),  # the user's choice stands
        (["-m", "unfit=fail", "method=glob(*)"], False),
        (["-m", "method=glob(*)", "+unfit=fail"], False),
        (["-m", "method=gradcam,raw_attention"], False),  # named explicitly: an unfit one fails
        (["method=raw_attention"], False),
        (["-m", "metric=glob(road*)"], False),  # a glob over another group
    ],
)
def test_a_glob_over_methods_skips_the_unfit_unless_the_command_line_says(argv, added):
    out = check_overrides(argv)
    assert ("unfit=skip" in out) == added, out
    assert out.count("unfit=skip") <= 1


def test_an_unfit_method_fails_the_job_by_default(tmp_path):
    with pytest.raises(Unfit, match=r"^method RawAttention cannot apply to model shapes_cnn"):
        job(tmp_path / "job", "method=raw_attention")
    record = json.loads((tmp_path / "job" / RECORD).read_text())
    assert record["status"] == "failed" and record["error"].startswith(REASON)


def test_the_record_of_a_skipped_job(tmp_path, capsys, caplog):
    folder = tmp_path / "job"
    with caplog.at_level("WARNING", logger="bench"):
        record = job(folder, "method=raw_attention", "unfit=skip")
    assert record["status"] == "skipped" and record["rows"] == 0
    assert record["reason"].startswith(REASON) and record["need"] == "attention"
    assert "error" not in record
    assert json.loads((folder / RECORD).read_text()) == json.loads(json.dumps(record))
    assert sorted(p.name for p in folder.iterdir()) == [RECORD]  # no rows, nothing else
    lines = [r.getMessage() for r in caplog.records if r.name == "bench"]
    assert len(lines) == 1 and "not applicable, skipped (unfit=skip)" in lines[0], lines
    # re-launched into its folder: checked again, nothing set aside
    again = job(folder, "method=raw_attention", "unfit=skip")
    assert again["status"] == "skipped" and not (folder / SUPERSEDED).exists()
    # and once it applies (here: another method in the same folder), it runs
    done = job(folder, "method=random", "unfit=skip")
    assert done["status"] == "completed" and done["rows"] == 2 and (folder / SCORES).is_file()


def test_collation_lists_a_skipped_job_and_exits_0(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    job(sweep / "0", "method=random", "unfit=skip")
    job(sweep / "1", "method=raw_attention", "unfit=skip")
    collation = collate([sweep])
    assert not collation.incomplete and len(collation.rows) == 2
    assert [n.job for n in collation.not_applicable] == [sweep / "1"]
    line = f"NOT APPLICABLE {sweep / '1'}: {REASON}"
    assert [ln for ln in collation.report() if ln.startswith("NOT APPLICABLE")] == [
        line + collation.not_applicable[0].reason.removeprefix(REASON)
    ]
    code, out, err = collate_cli(capsys, sweep)
    assert code == 0 and "random" in out and "raw_attention" not in out, err
    assert err.count("NOT APPLICABLE") == 1 and line in err and "did not complete" not in err
    assert line in (sweep / "summary.md").read_text()


def test_collation_of_only_skipped_jobs_exits_1_saying_so(tmp_path, capsys):
    job(tmp_path / "sweep" / "0", "method=raw_attention", "unfit=skip")
    code, _, err = collate_cli(capsys, tmp_path / "sweep")
    assert code == 1 and "NOT APPLICABLE" in err
    assert "bench-collate: no rows: every job under" in err and "cannot apply" in err


def test_naming_an_unfit_method_fails_in_one_line(tmp_path):
    res = run_bench(["method=raw_attention", *JOB, f"paths.output_root={tmp_path}"])
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [f"error: {REASON}" + lines[0].removeprefix(f"error: {REASON}")], res.stderr
    assert "Traceback" not in res.stderr


def _sweep_check(res, sweep: Path, unfit: tuple[str, ...], fit: int) -> None:
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("NOT APPLICABLE")]
    assert sorted(ln.split()[2].rsplit("_shapes_", 1)[1].rstrip(":") for ln in lines) == list(
        unfit
    ), lines
    assert all("cannot apply to model shapes_cnn" in ln for ln in lines)
    summary = (sweep / "summary.md").read_text()
    assert all(ln in summary for ln in lines)
    records = [json.loads(p.read_text()) for p in sweep.glob(f"*/{RECORD}")]
    status = sorted(r["status"] for r in records)
    assert status == ["completed"] * fit + ["skipped"] * len(unfit), status
    assert all(r["config"]["unfit"] == "skip" for r in records)  # set by the glob


@pytest.mark.slow
def test_a_glob_sweep_over_methods_skips_those_that_cannot_apply(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_bench(
        ["-m", "method=glob([*cam*,*attention*],exclude=[scorecam,ablationcam])", *JOB,
         f"hydra.sweep.dir={sweep}", f"paths.output_root={tmp_path}"]
    )  # fmt: skip
    fit = ("cam", "eigencam", "gradcam", "gradcam_pp", "guided_gradcam", "layercam", "xgradcam")
    _sweep_check(res, sweep, ATTENTION, len(fit))


@pytest.mark.slow
def test_the_readme_glob_sweep_over_every_method_exits_0(tmp_path):
    """README: ``bench -m method='glob(*)'`` on the default CNN (here on 1 image, one metric)."""
    from bench.config.overrides import options

    sweep = tmp_path / "sweep"
    res = run_bench(
        ["-m", "method=glob(*)", "dataset.limit=1", "batch_size=1", "metric=[sparseness]",
         f"hydra.sweep.dir={sweep}", f"paths.output_root={tmp_path}"],
        timeout=1800,
    )  # fmt: skip
    _sweep_check(res, sweep, ATTENTION, len(options("method")) - len(ATTENTION))
