"""``python -m bench.cli.loggers tensorboard JOB...``: log completed jobs to a tracking tool after
the fact."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.core.errors import ConfigError
from bench.results.collate import find_job_dirs, read_record
from bench.results.loggers import LOGGERS, log_job


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.cli.loggers tensorboard JOB...``: log completed job folders after the fact."""
    p = argparse.ArgumentParser(description="Log completed jobs to a tracking tool.")
    p.add_argument("kind", choices=LOGGERS)
    p.add_argument("folders", nargs="+", help="job or sweep folders (searched recursively)")
    p.add_argument("--maps", type=int, default=4, help="maps logged as images (default 4)")
    args = p.parse_args(argv)
    code = 0
    for job in find_job_dirs(args.folders):
        try:
            status = read_record(job).status
            if status != "completed":
                print(
                    f"bench.cli.loggers: {job} is {status}, not completed: skipped.",
                    file=sys.stderr,
                )
                continue
            where = log_job(job, args.kind, maps=args.maps)
        except ConfigError as err:  # CollateError included: one line naming the folder
            print(f"bench.cli.loggers: {err}", file=sys.stderr)
            code = 2
            continue
        if where is not None:
            print(where)
    return code


if __name__ == "__main__":
    sys.exit(main())
