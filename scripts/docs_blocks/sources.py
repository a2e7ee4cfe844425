"""What the blocks are written from: the committed results (``results/reference/``,
``results/perf/``), read once, and the findings a block states (:class:`Claim`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.stats import ALPHA as ALPHA  # a Holm-corrected p below it is a finding


@dataclass(frozen=True)
class Claim:
    """One finding a block states, re-derived by tests/test_findings.py from the file it names.

    ``kind``: ``beats`` (``better`` beats ``worse`` on ``metric``: Holm-corrected p below
    :data:`ALPHA` in ``source``'s ``paired.csv``, in the metric's direction), ``tie`` (no such
    difference: corrected p at or above it), ``mean_better`` (``better``'s mean in ``source``'s
    ``summary.csv`` is better by the metric's direction; no test), ``equal`` (the two methods'
    means are equal in every column of ``metric``, a comma-separated list)."""

    kind: str
    source: str
    metric: str
    better: str
    worse: str


@dataclass(frozen=True)
class Rendered:
    """A block's Markdown and the findings it states."""

    text: str
    claims: tuple[Claim, ...] = ()


class Sources:
    """The committed files under ``root`` (a checkout), each read once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._read: dict[tuple[str, str], Any] = {}

    def _once(self, kind: str, relative: str) -> Any:
        key = (kind, relative)
        if key not in self._read:
            path = self.root / relative
            self._read[key] = (
                pd.read_csv(path)
                if kind == "csv"
                else json.loads(path.read_text())
                if kind == "json"
                else path.read_text()
            )
        return self._read[key]

    def summary(self, folder: str) -> pd.DataFrame:
        return self._once("csv", f"results/reference/{folder}/summary.csv")

    def paired(self, folder: str) -> pd.DataFrame:
        return self._once("csv", f"results/reference/{folder}/paired.csv")

    def friedman(self, folder: str) -> pd.DataFrame:
        return self._once("csv", f"results/reference/{folder}/friedman.csv")

    def manifest(self, folder: str) -> dict[str, Any]:
        """A results folder's ``MANIFEST.json`` (``folder`` relative to ``results/``)."""
        return self._once("json", f"results/{folder}/MANIFEST.json")

    def json(self, relative: str) -> dict[str, Any]:
        return self._once("json", relative)

    def text(self, relative: str) -> str:
        return self._once("text", relative)

    def mean(self, folder: str, method: str, metric: str) -> float:
        s = self.summary(folder)
        hit = s[(s["method"] == method) & (s["metric"] == metric)]
        if len(hit) != 1:
            raise KeyError(f"{folder}/summary.csv has {len(hit)} rows for {method} {metric}")
        return float(hit["mean"].iloc[0])

    def tables(self, relative: str) -> list[list[dict[str, str]]]:
        """The Markdown tables of a committed file, each a list of rows (header -> cell)."""
        return md_tables(self.text(relative))


def md_tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table of ``text``: rows as dicts keyed by the header's cells."""
    out: list[list[dict[str, str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]))))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def number(cell: str) -> float:
    """The first number of a table cell (``0.371 (0.338-0.459)`` -> 0.371, ``1.35x`` -> 1.35)."""
    m = re.search(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", cell.replace("**", ""))
    if not m:
        raise ValueError(f"no number in table cell {cell!r}")
    return float(m.group(0))


def fmt(x: float, digits: int = 3) -> str:
    """A mean as the tables print it (``NaN`` for no value)."""
    return "NaN" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value in two significant digits: ``0.031``, ``0.80``, ``0.0038``; ``9.8e-4``,
    ``3.6e-22`` below 0.001."""
    if p >= 0.001:
        return format(p, "#.2g")
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"
