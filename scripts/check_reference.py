"""Does a fresh sweep reproduce a committed reference table? Same rows, same n, same means.

    python scripts/check_reference.py <sweep folder> results/reference/default_benchmark

Collates the sweep (``bench.results.collate``), reads the reference's ``summary.csv`` and
compares them cell by cell (model, dataset, method, metric): the set of cells, ``n``,
``excluded`` and ``mean`` (within ``--atol``, default 1e-6). Intervals are compared too and
reported, never counted as a failure: they changed by design when the statistics became one
module (issue 23: the bootstrap interval replaced the Student-t one). Exits 0 when every cell
reproduces, 1 otherwise, printing one line per difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results.collate import collate, summarise

KEY = ["model", "dataset", "method", "metric"]


def compare(sweep: Path, reference: Path, atol: float) -> tuple[list[str], int]:
    """Differences (one line each) of the sweep's summary from the reference's, and how many
    cells' intervals moved."""
    got = summarise(collate([sweep]).rows).set_index(KEY)
    want = pd.read_csv(reference / "summary.csv").set_index(KEY)
    problems = [f"missing from the sweep: {k}" for k in want.index.difference(got.index)]
    problems += [f"not in the reference: {k}" for k in got.index.difference(want.index)]
    moved = 0
    for key in want.index.intersection(got.index):
        g, w = got.loc[key], want.loc[key]
        for col in ("n", "excluded"):
            if col in w and int(g[col]) != int(w[col]):
                problems.append(f"{key}: {col} {g[col]} != reference {w[col]}")
        if not np.isclose(g["mean"], w["mean"], rtol=0, atol=atol, equal_nan=True):
            problems.append(f"{key}: mean {g['mean']!r} != reference {w['mean']!r}")
        interval = [g["ci_low"], g["ci_high"]], [w["ci_low"], w["ci_high"]]
        moved += not np.allclose(*interval, rtol=0, atol=atol, equal_nan=True)
    return problems, moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    problems, moved = compare(args.sweep, args.reference, args.atol)
    for line in problems:
        print(line)
    cells = len(pd.read_csv(args.reference / "summary.csv"))
    verdict = "reproduces" if not problems else f"differs in {len(problems)} place(s)"
    print(f"{args.sweep} {verdict}: {cells} reference cells; intervals moved in {moved}.")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
