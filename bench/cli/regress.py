"""``bench-regress``: compare a run with a committed baseline (bench/results/regress.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.core.errors import ConfigError
from bench.engine.io import atomic_write_bytes
from bench.results.regress import (
    FAILING,
    PROG,
    RegressError,
    Tolerances,
    _parser,
    _provenance,
    cells_of,
    compare,
    format_diff,
    format_report,
    read_baseline,
    read_current,
    write_baseline,
)


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
    if args.report:
        report = format_report(
            comparisons,
            baseline,
            args.baseline,
            args.current,
            tol,
            notes,
            _provenance(rows)["versions"],
        )
        try:
            atomic_write_bytes(args.report, report.encode())
        except OSError as err:
            print(
                f"{PROG}: --report {args.report} cannot be written ({err.strerror or err}).",
                file=sys.stderr,
            )
            return 2
    failing = [c for c in comparisons if c.status in FAILING]
    for c in failing:
        print(c.line(), file=sys.stderr)
    if failing:
        print(f"{PROG}: {len(failing)} regression(s) of {len(comparisons)} cells.", file=sys.stderr)
        return 1
    print(f"{PROG}: no regression in {len(comparisons)} cells.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
