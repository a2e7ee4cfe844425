"""``bench-figures``: the figures (PNG and PDF) of job and sweep folders."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cli.folders import folder_parser, parse_folder_args
from bench.core.errors import first_line
from bench.results.collate import CollateError
from bench.results.figures import BANDS, write_figures


def main(argv: Sequence[str] | None = None) -> int:
    """``bench-figures DIR... --out DIR``: exit 0 with the files written (one a line); 2 when a
    folder cannot be trusted or an argument is wrong; 1 when no completed job was found."""
    p = folder_parser("bench-figures", "Figures (PNG and PDF) from job and sweep folders.")
    p.add_argument("--out", help="where to write (default: <first folder>/figures)")
    p.add_argument("--images", type=int, default=6, help="rows of the saliency grid (default 6)")
    p.add_argument(
        "--band", choices=BANDS, default="iqr", help="band around mean curves (default iqr)"
    )
    p.add_argument(
        "--from-cache",
        action="store_true",
        help="for jobs run without save_maps, read maps back from the attribution cache "
        "(loads each job's model and data)",
    )
    p.add_argument("--format", default="png,pdf", help="comma-separated formats (default png,pdf)")
    args = parse_folder_args(p, argv, images_minimum=1)
    if args is None:
        return 2
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats:
        print("bench-figures: --format is empty; accepted: e.g. png,pdf.", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = Path(args.out or Path(args.folders[0]) / "figures")
    try:
        written = write_figures(args.folders, out, args.images, args.band, args.from_cache, formats)
    except CollateError as err:
        print(f"bench-figures: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # an unknown format from matplotlib
        print(f"bench-figures: {first_line(err)}", file=sys.stderr)
        return 2
    if not written:
        print(f"bench-figures: no completed job under {', '.join(args.folders)}.", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
