"""``bench-regress``: compare a run with a committed baseline (bench/results/regress.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.core.errors import ConfigError
from bench.core.paths import CONF_DIR
from bench.engine.io import atomic_write_bytes
from bench.results.regress import (
    DEFAULT_TOLERANCE,
    PROG,
    RegressError,
    RegressionCheck,
    Tolerances,
    cells_of,
    compare,
    provenance,
    read_baseline,
    read_current,
    write_baseline,
)
from bench.results.regress_report import format_diff, format_report
from bench.results.report.regress import regression_page


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compare a run with a committed baseline per (model, dataset, method, metric); "
        "exit 0 (no regression), 1 (a regression) or 2 (bad input).",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--baseline", metavar="FILE", help="the baseline to compare with")
    mode.add_argument(
        "--write-baseline",
        metavar="FILE",
        help="write the current run as the baseline (.json or .json.gz)",
    )
    p.add_argument(
        "--current", nargs="+", required=True, metavar="DIR", help="job or sweep folders of the run"
    )
    files = {
        "--tolerance": f"tolerance YAML (default: {DEFAULT_TOLERANCE.relative_to(CONF_DIR.parent)})",
        "--report": "also write the Markdown report here",
        "--html": "also write the check as a self-contained HTML page here (to attach to a CI run)",
    }
    for flag, help_ in files.items():
        p.add_argument(flag, metavar="FILE", help=help_)
    overrides = {
        "--abs": "absolute margin for every metric (overrides the file)",
        "--rel": "relative margin for every metric (overrides the file)",
        "--alpha": "the paired test's significance level",
    }
    for flag, help_ in overrides.items():
        p.add_argument(flag, type=float, help=help_)
    p.add_argument(
        "--paired",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require a significant paired test (overrides the file)",
    )
    p.add_argument(
        "--command", help="with --write-baseline: the command that made the run, kept in the file"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``bench-regress``: 0 no regression, 1 a regression (named on stderr), 2 bad input."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed its usage line and the error
        return int(exit_.code or 0)
    try:
        if args.write_baseline:
            rows, notes, incomplete = read_current(args.current)
            for line in notes:
                print(line, file=sys.stderr)
            if incomplete:
                raise RegressError(
                    "a job of --current did not complete (listed above); a baseline needs a "
                    "complete run: rerun it first."
                )
            doc = write_baseline(args.write_baseline, rows, args.command)
            print(
                f"{PROG}: wrote {args.write_baseline}: {len(doc['cells'])} cells, "
                f"{sum(len(c['values']) for c in doc['cells'])} per-image values from {doc['jobs']} job(s)."
            )
            return 0
        tol = Tolerances.load(
            args.tolerance, abs=args.abs, rel=args.rel, paired=args.paired, alpha=args.alpha
        )
        baseline = read_baseline(args.baseline)
        rows, notes, _ = read_current(args.current)
    except ConfigError as err:  # RegressError, and check_* errors of --abs/--rel/--alpha
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    comparisons = compare(baseline, cells_of(rows), tol)
    print(format_diff(comparisons))
    for line in notes:
        print(line, file=sys.stderr)
    prov = provenance(rows)
    check = RegressionCheck(comparisons, baseline, args.baseline, args.current, tol, notes,
                            prov["versions"], prov["machine"])  # fmt: skip
    for option, path, render in (
        ("--report", args.report, format_report),
        ("--html", args.html, regression_page),
    ):
        if not path:
            continue
        try:
            atomic_write_bytes(path, render(check).encode())
        except OSError as err:
            print(
                f"{PROG}: {option} {path} cannot be written ({err.strerror or err}).",
                file=sys.stderr,
            )
            return 2
    failing = check.failing
    for c in failing:
        print(c.line(), file=sys.stderr)
    if failing:
        print(f"{PROG}: {len(failing)} regression(s) of {len(comparisons)} cells.", file=sys.stderr)
        return 1
    print(f"{PROG}: no regression in {len(comparisons)} cells.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
