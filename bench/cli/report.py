"""``bench-report``: one self-contained HTML report of job and sweep folders."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from bench.cli.folders import folder_parser, parse_folder_args
from bench.results.collate import CollateError
from bench.results.report import REPORT, write_report


def main(argv: Sequence[str] | None = None) -> int:
    """``bench-report DIR... [--out report.html]``: exit 0 with the file written (its path and
    size on stdout); 1 when no completed job was found (the page, saying so, is still written);
    2 when a folder cannot be trusted or an argument is wrong."""
    p = folder_parser(
        "bench-report",
        "One self-contained HTML report (tables, tests, curves, maps) of job and sweep folders: "
        "open it from a file, a CI artifact or an e-mail.",
    )
    p.add_argument("--out", help=f"the file to write (default: <first folder>/{REPORT})")
    p.add_argument("--images", type=int, default=4, help="rows of the saliency grid (default 4)")
    p.add_argument("--title", help="the page's title")
    p.add_argument(
        "--no-cache-maps",
        action="store_true",
        help="do not read maps back from the attribution cache for jobs that saved none",
    )
    args = parse_folder_args(p, argv, images_minimum=0)
    if args is None:
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        done = write_report(args.folders, args.out, args.images, not args.no_cache_maps, args.title)
    except CollateError as err:
        print(f"bench-report: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"bench-report: cannot write {args.out} ({err.strerror or err}).", file=sys.stderr)
        return 2
    print(f"{done.path}  ({done.path.stat().st_size / 1e6:.2f} MB, {done.seconds:.1f} s)")
    if not done.jobs:
        print(f"bench-report: no completed job under {', '.join(args.folders)}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
