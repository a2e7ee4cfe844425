"""``bench-collate``: job and sweep folders into one summary table (and the paper tables)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cli.folders import folder_parser, parse_folder_args
from bench.core.errors import ConfigError
from bench.results.collate import (
    CollateError,
    Collation,
    collate,
    format_table,
    write_summary,
)
from bench.results.figure_base import jobs_of
from bench.results.report import REPORT, write_report


def main(argv: Sequence[str] | None = None) -> int:
    """``bench-collate``: exit 0 with the table; 1 when a job is incomplete (unless
    ``--allow-incomplete``; a job skipped because its method cannot apply to its model is listed,
    not incomplete) or no job left a row; 2 when a folder cannot be trusted or an argument is
    wrong. With
    ``--out DIR`` the paper tables of :func:`bench.results.papers.write_paper_tables` are written there
    too (unless ``--no-paper``)."""
    args = parse_folder_args(_parser(), argv)
    if args is None:
        return 2
    try:
        collation = collate(args.folders)
    except CollateError as err:
        print(f"bench-collate: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or args.folders[0])
    try:
        summary, table = write_summary(out, collation)
    except OSError as err:
        print(
            f"bench-collate: cannot write the summary into {out} ({err.strerror or err}); "
            "pass --out <a writable folder>.",
            file=sys.stderr,
        )
        return 1
    if args.out and not args.no_paper and not _paper_tables(collation, args.out):
        return 2
    if args.out and not args.no_report and not _report(args.folders, args.out, collation):
        return 2
    if args.metrics or args.means:
        metrics = (
            [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        )
        try:
            table = format_table(summary, metrics, ci=not args.means)
        except ValueError as err:
            print(f"bench-collate: {err}", file=sys.stderr)
            return 2
    print(table)
    for line in collation.report():
        print(line, file=sys.stderr)
    return _status(collation, args.folders, args.allow_incomplete)


def _parser() -> argparse.ArgumentParser:
    p = folder_parser("bench-collate", "Collate job folders into one summary table.")
    p.add_argument("--out", help="where to write the summary (default: the first folder)")
    p.add_argument(
        "--metrics",
        help="comma-separated columns, in order, for the printed table (e.g. road_abc,mprt.spearman_abs)",
    )
    switches = {
        "--means": "print means only, without the intervals",
        "--allow-incomplete": "exit 0 even when some jobs did not complete (they are still "
        "listed, and left out)",
        "--no-paper": "with --out, write only the summary, not the paper tables "
        "(bench.results.papers)",
        "--no-report": "with --out, do not write report.html (bench.results.report)",
    }
    for flag, help_ in switches.items():
        p.add_argument(flag, action="store_true", help=help_)
    return p


def _report(folders: Sequence[str], out: str, collation: Collation) -> bool:
    """Write ``<out>/report.html`` from ``collation`` (a line on stderr says where); False (the
    error on stderr) when it cannot be written."""
    try:
        done = write_report(folders, Path(out) / REPORT, loaded=(jobs_of(collation), collation))
    except (ConfigError, OSError) as err:
        print(f"bench-collate: the report was not written ({err}).", file=sys.stderr)
        return False
    print(f"bench-collate: report written to {done.path}", file=sys.stderr)
    return True


def _paper_tables(collation: Collation, out: str) -> bool:
    """Write the paper tables into ``out`` (a line on stderr says how many files); False (the
    error on stderr) when the rows cannot make them."""
    from bench.results.papers import (
        write_paper_tables,  # scipy and pandas' Styler: only when asked
    )

    try:
        written = write_paper_tables(collation, None, Path(out))
    except ConfigError as err:
        print(f"bench-collate: {err}", file=sys.stderr)
        return False
    if written:
        print(
            f"bench-collate: {len(written)} paper table file(s) written to {out} "
            "(table.md, table_*.tex, ranks.md, paired.md, throughput.md, ...)",
            file=sys.stderr,
        )
    return True


def _status(collation: Collation, folders: Sequence[str], allow_incomplete: bool) -> int:
    """The exit status once the table is printed: 1 (the reason on stderr) when a job did not
    complete (unless allowed) or no job left a row, else 0."""
    if collation.incomplete and not allow_incomplete:
        print(
            f"bench-collate: {len(collation.incomplete)} job(s) did not complete (listed above); "
            "rerun them, or pass --allow-incomplete to accept the table without them.",
            file=sys.stderr,
        )
        return 1
    if collation.rows.empty and not collation.incomplete:
        if collation.empty:
            why = "every completed job under {} scored no image"
        elif collation.not_applicable:
            why = "every job under {} was skipped: its method cannot apply to its model"
        else:
            why = "no completed job under {} was found"
        print(f"bench-collate: no rows: {why.format(', '.join(folders))}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
