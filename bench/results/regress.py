"""Regression tracking: compare a run with a committed baseline, per (model, dataset, method, metric).

    bench-regress --write-baseline results/reference/regress/baseline.json --current results/sweeps/X
    bench-regress --baseline results/reference/regress/baseline.json --current results/sweeps/Y \\
        [--tolerance conf/regress/default.yaml] [--report regress.md]

The current run is one or more job or sweep folders, collated by :func:`bench.results.collate.collate` (the
same checks as ``bench-collate``). The baseline file (JSON, gzip-compressed when its name ends in
``.gz``) keeps, per cell, the summary (n, mean, 95% CI, direction, maps excluded, the cell's config
hash) and every image's value, so a later check can pair images. A cell regresses when its mean
moves in the metric's worse direction by more than the tolerance (``conf/regress/default.yaml``:
absolute, relative, per-metric overrides; ``paired: true`` also asks a one-sided paired test over
the shared image ids to find the worsening significant).

Exit status: 0 no regression; 1 a regression (every regressed or missing cell named on stderr);
2 bad input (a missing, unreadable or malformed baseline, tolerance file or run folder): one line
on stderr.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.core.errors import ConfigError, check_bool, check_choice, check_number, first_line
from bench.core.paths import CONF_DIR
from bench.engine.io import MAP_FLAGS, atomic_write_bytes
from bench.engine.provenance import machine
from bench.metrics.base import Stability
from bench.results.collate import GROUP, CollateError, collate, read_record, summarise

PROG = "bench-regress"
FORMAT = "attribution-bench regress baseline"
VERSION = 1
#: The tolerances used when ``--tolerance`` is not given.
DEFAULT_TOLERANCE = CONF_DIR / "regress" / "default.yaml"
TESTS = ("t", "wilcoxon")
#: Statuses that fail the check.
FAILING = ("regressed", "missing")
#: Differences this small are rounding, never a change (float32 scores written as text).
EPS = 1e-9


class RegressError(ConfigError):
    """Bad input to the check (baseline, tolerance file, run folders): one line, exit 2."""


# -- tolerances ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How far one cell's mean may move in its worse direction: ``max(abs, rel * |baseline|)``;
    with ``paired``, a worsening beyond that counts only when a one-sided paired test over the
    shared image ids gives ``p < alpha``."""

    abs: float = 0.02
    rel: float = 0.05
    paired: bool = False
    alpha: float = 0.01
    test: str = "t"

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline)) if math.isfinite(baseline) else self.abs


RULE_KEYS = ("abs", "rel", "paired", "alpha", "test")


def _rule(where: str, node: Any, base: Rule) -> Rule:
    if node is None:
        return base
    if not isinstance(node, dict):
        raise RegressError(f"{where} is {node!r}; accepted: a mapping of {', '.join(RULE_KEYS)}.")
    out = {}
    for k, v in node.items():
        key = f"{where}.{k}" if where else f"--{k}"  # "": a command-line option
        if k not in RULE_KEYS:
            raise RegressError(f"{key} is not a tolerance key; accepted: {', '.join(RULE_KEYS)}.")
        if k in ("abs", "rel"):
            out[k] = check_number(key, v, minimum=0)
        elif k == "alpha":
            out[k] = check_number(key, v, above=0, below=1)
        elif k == "paired":
            out[k] = check_bool(key, v)
        else:
            out[k] = check_choice(key, v, TESTS)
    return replace(base, **out)


@dataclass
class Tolerances:
    """The default rule and per-metric overrides (a metric's own name first, then its base name,
    so ``pointing_game`` covers ``pointing_game.difficult``)."""

    default: Rule = field(default_factory=Rule)
    metrics: dict[str, Rule] = field(default_factory=dict)
    source: str = "built-in defaults"

    def rule(self, metric: str) -> Rule:
        if metric in self.metrics:
            return self.metrics[metric]
        base = metric.split("[")[0].split(".")[0]
        return self.metrics.get(base, self.default)

    @classmethod
    def load(cls, path: str | Path | None, **overrides: Any) -> Tolerances:
        """Read a tolerance file (YAML: ``default:`` and ``metrics: {name: {...}}``); ``overrides``
        (``abs``, ``rel``, ``paired``, ``alpha``, ``test``; None = as in the file) apply to the
        default and to every metric's rule."""
        chosen = Path(path) if path is not None else DEFAULT_TOLERANCE
        node: Any = {}
        source = "built-in defaults"
        if path is not None or chosen.is_file():
            try:
                node = yaml.safe_load(chosen.read_text()) or {}
            except OSError as err:
                raise RegressError(
                    f"--tolerance {chosen} cannot be read ({err.strerror or err}); accepted: a "
                    "YAML file with default: and metrics: (conf/regress/default.yaml)."
                ) from None
            except yaml.YAMLError as err:
                line = getattr(getattr(err, "problem_mark", None), "line", None)
                where = f" line {line + 1}" if line is not None else ""
                raise RegressError(f"--tolerance {chosen}{where}: not valid YAML.") from None
            source = _shown(chosen)
        if not isinstance(node, dict) or set(node) - {"default", "metrics"}:
            extra = sorted(set(node) - {"default", "metrics"}) if isinstance(node, dict) else node
            raise RegressError(
                f"--tolerance {chosen}: {extra!r} is not valid; accepted: a mapping with the keys "
                "default and metrics."
            )
        given = {k: v for k, v in overrides.items() if v is not None}
        default = _rule("default", node.get("default"), Rule())
        metrics_node = node.get("metrics") or {}
        if not isinstance(metrics_node, dict):
            raise RegressError(
                f"--tolerance {chosen}: metrics is {metrics_node!r}; accepted: a mapping "
                "metric name -> tolerance keys."
            )
        metrics = {str(m): _rule(f"metrics.{m}", r, default) for m, r in metrics_node.items()}
        if given:
            default = _rule("", given, default)
            metrics = {m: _rule("", given, r) for m, r in metrics.items()}
        return cls(default, metrics, source)


#: How many images of a cell may move at once between two CPUs (docs/stability.md: one of the
#: committed baseline's 288 per-image values moved between the machines it was checked on).
MOVING_IMAGES = 2


def cross_machine_margin(stability: Stability | str, step_fraction: float, n: int) -> float:
    """How far a cell's mean over ``n`` images may move on another CPU: :data:`MOVING_IMAGES`
    images, each by the largest move of its score's :class:`~bench.metrics.base.Stability`: a 0/1
    score flips (1); a curve AUC whose near-tied pixels straddle a step boundary changes one point,
    whose weight in the area is the step's share of the pixels (``step_fraction``); a continuous
    score moves by about the rounding (1e-5 allowed)."""
    largest = {Stability.BINARY: 1.0, Stability.RANKING: step_fraction, Stability.ROUNDING: 1e-5}
    return MOVING_IMAGES * largest[Stability(stability)] / max(n, 1)


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (as a report shows it)."""
    try:
        return str(path.resolve().relative_to(CONF_DIR.parent))
    except ValueError:
        return str(path)


# -- cells: summary plus per-image values ----------------------------------------------------


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def cells_of(rows: pd.DataFrame) -> dict[tuple[str, ...], dict[str, Any]]:
    """Per (model, dataset, method, metric): the summary of :func:`bench.results.collate.summarise` and
    every image's value (maps flagged ``nonfinite_map``/``constant_map`` left out, as in the
    table; NaN kept as None), keyed by image id."""
    if rows.empty:
        return {}
    summary = summarise(rows)
    out = {}
    for key, g in rows.groupby(GROUP, sort=True):
        s = summary[(summary[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].iloc[0]
        kept = g[~g["flag"].isin(MAP_FLAGS)].drop_duplicates("image_id")
        cell = dict(zip(GROUP, map(str, key)))
        cell.update(
            direction=str(s["direction"]),
            n=int(s["n"]),
            mean=_num(s["mean"]),
            ci_low=_num(s["ci_low"]),
            ci_high=_num(s["ci_high"]),
            excluded=int(s["excluded"]),
            config=sorted(set(map(str, g["cell"]))) if "cell" in g else [],
            values={str(i): _num(v) for i, v in zip(kept["image_id"], kept["value"])},
        )
        out[tuple(cell[k] for k in GROUP)] = cell
    return out


def provenance(rows: pd.DataFrame) -> dict[str, Any]:
    """Package versions and git commit of the run's first job, how many jobs there were, and
    the machine: the job record's CPU, platform and load average at its start where the record
    has them (records before this release lack the CPU: this process's machine is named then)."""
    jobs = sorted(set(rows["job"])) if "job" in rows else []
    versions: dict[str, Any] = {}
    device: dict[str, Any] = {}
    if jobs:
        try:
            record = read_record(Path(jobs[0]))
            versions, device = record.versions or {}, record.device or {}
        except CollateError:
            pass
    here = machine()
    found = {k: device.get(k) for k in ("cpu", "platform", "load_average") if device.get(k)}
    return {"jobs": len(jobs), "versions": versions, "machine": {**here, **found}}


def read_current(dirs: Sequence[str | Path]) -> tuple[pd.DataFrame, list[str], int]:
    """The collated rows of ``dirs``, collation's notes (incomplete jobs, duplicates, skipped
    images) and the number of jobs that did not complete."""
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        raise RegressError(
            f"--current {missing[0]} is not a folder; accepted: job or sweep folders of a run."
        )
    try:
        collation = collate(list(dirs))
    except CollateError as err:
        raise RegressError(str(err)) from None
    if collation.rows.empty:
        raise RegressError(
            f"--current {' '.join(map(str, dirs))} holds no completed job; accepted: job or "
            "sweep folders of a run that completed."
        )
    return collation.rows, collation.report(), len(collation.incomplete)


# -- the baseline file -----------------------------------------------------------------------


def write_baseline(path: str | Path, rows: pd.DataFrame, command: str | None = None) -> dict:
    """Write the baseline of ``rows`` (collated) to ``path`` (gzip when it ends in ``.gz``), with
    the run's provenance: command, versions and commit, and the ``machine`` it ran on (a baseline
    written before this release has no ``machine``: it reads as unrecorded)."""
    cells = cells_of(rows)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        **provenance(rows),
        "cells": list(cells.values()),
    }
    data = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    path = Path(path)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return doc


CELL_FIELDS = (*GROUP, "direction", "mean", "values")


def read_baseline(path: str | Path) -> dict[str, Any]:
    """The baseline document at ``path``, checked; a :class:`RegressError` (one line) otherwise."""
    path = Path(path)
    what = f"a baseline written by {PROG} --write-baseline"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RegressError(
            f"--baseline {path} cannot be read ({err.strerror or type(err).__name__}); "
            f"accepted: {what}."
        ) from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as err:
        raise RegressError(
            f"--baseline {path} is not valid JSON ({type(err).__name__}: {first_line(err)}); "
            f"accepted: {what}."
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RegressError(f"--baseline {path} is not {what} (no format: {FORMAT!r}).")
    if doc.get("version") != VERSION:
        raise RegressError(
            f"--baseline {path} has version {doc.get('version')!r}; accepted: {VERSION} "
            "(write it again with this version)."
        )
    cells = doc.get("cells")
    if not isinstance(cells, list) or not cells:
        raise RegressError(f"--baseline {path} has no cells; accepted: {what}.")
    for i, c in enumerate(cells):
        lacking = [k for k in CELL_FIELDS if not isinstance(c, dict) or k not in c]
        if lacking:
            raise RegressError(
                f"--baseline {path}: cells[{i}] lacks {', '.join(lacking)}; accepted: {what}."
            )
        bad = c["mean"] is not None and not isinstance(c["mean"], (int, float))
        if bad or not isinstance(c["values"], dict):
            raise RegressError(
                f"--baseline {path}: cells[{i}] ({c['method']} {c['metric']}) has a mean or "
                f"values that are not numbers; accepted: {what}."
            )
    return doc


# -- the comparison --------------------------------------------------------------------------


@dataclass
class Comparison:
    """One cell: baseline and current summaries, the margin, the paired test and the verdict."""

    key: tuple[str, ...]
    direction: str
    status: str
    base: float | None = None
    current: float | None = None
    allowed: float | None = None
    n_base: int = 0
    n_current: int = 0
    paired_n: int = 0
    p: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        if self.base is None or self.current is None:
            return None
        return self.current - self.base

    @property
    def worse(self) -> float | None:
        """How much worse the current mean is (negative: better); None without a direction."""
        d = self.delta
        if d is None or self.direction not in ("higher", "lower"):
            return None
        return -d if self.direction == "higher" else d

    def line(self) -> str:
        model, dataset, method, metric = self.key
        where = f"method={method} metric={metric} (model={model}, dataset={dataset})"
        if self.status == "missing":
            return f"MISSING {where}: in the baseline, not in the current run."
        if self.current is None:
            return f"REGRESSED {where}: no finite score now (baseline mean {fmt(self.base)})."
        test = f", paired p={self.p:.2g} over {self.paired_n} images" if self.p is not None else ""
        return (
            f"REGRESSED {where}: mean {fmt(self.base)} -> {fmt(self.current)} "
            f"({'lower' if self.direction == 'higher' else 'higher'} is worse here: worse by "
            f"{fmt(self.worse)} > allowed {fmt(self.allowed)}{test})."
        )


@dataclass(frozen=True)
class RegressionCheck:
    """One check of a run against a baseline: what both renderers (the Markdown report,
    :mod:`bench.results.regress_report`, and the HTML page, :mod:`bench.results.report.regress`)
    show.

    Attributes:
        comparisons: one per cell (:func:`compare`).
        baseline: the baseline document (:func:`read_baseline`).
        baseline_path: where the baseline was read from, as given.
        current: the job or sweep folders of the current run, as given.
        tol: the tolerances the cells were judged by.
        notes: lines about the current run (:func:`read_current`).
        versions: the current run's package versions (:func:`provenance`).
        machine: the current run's machine (:func:`provenance`).
    """

    comparisons: list[Comparison]
    baseline: dict[str, Any]
    baseline_path: str
    current: Sequence[str]
    tol: Tolerances
    notes: Sequence[str] = ()
    versions: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] | None = None

    @property
    def failing(self) -> list[Comparison]:
        """The cells that fail the check (regressed or missing)."""
        return [c for c in self.comparisons if c.status in FAILING]


def fmt(x: float | None, digits: int = 4) -> str:
    """``x`` to ``digits`` decimals; a dash for a missing or non-finite value."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _paired(base: dict, cur: dict) -> tuple[np.ndarray, np.ndarray]:
    ids = [i for i in base if i in cur and base[i] is not None and cur[i] is not None]
    return np.array([base[i] for i in ids], float), np.array([cur[i] for i in ids], float)


def paired_p(b: np.ndarray, c: np.ndarray, direction: str, test: str) -> float:
    """One-sided p-value of "the current values are worse" (``direction`` of the metric): the
    Wilcoxon signed-rank test with zero differences split between the signs (scipy's
    ``zero_method="zsplit"``), or the one-sample t-test, on the per-image worsening."""
    from scipy import stats

    diff = (c - b) if direction == "lower" else (b - c)  # > 0: worse
    if len(diff) < 2 or not np.any(diff != 0):
        return 1.0
    if test == "wilcoxon":
        res = stats.wilcoxon(diff, alternative="greater", zero_method="zsplit")
    else:
        if np.all(diff == diff[0]):  # no spread: every image moved by the same amount
            return 0.0 if diff[0] > 0 else 1.0
        res = stats.ttest_1samp(diff, 0.0, alternative="greater")
    p = float(res.pvalue)
    return p if math.isfinite(p) else 1.0


def compare(
    baseline: dict[str, Any], current: dict[tuple, dict], tol: Tolerances
) -> list[Comparison]:
    """Every cell of the baseline and of the current run, compared under ``tol``."""
    base = {tuple(str(c[k]) for k in GROUP): c for c in baseline["cells"]}
    out = []
    for key in sorted(set(base) | set(current)):
        b, c = base.get(key), current.get(key)
        if c is None:
            out.append(
                Comparison(key, b["direction"], "missing", base=b["mean"], n_base=b.get("n", 0))
            )
            continue
        if b is None:
            out.append(Comparison(key, c["direction"], "new", current=c["mean"], n_current=c["n"]))
            continue
        rule = tol.rule(key[3])
        cmp = Comparison(
            key,
            c["direction"],
            "ok",
            base=b["mean"],
            current=c["mean"],
            allowed=rule.allowed(b["mean"] if b["mean"] is not None else float("nan")),
            n_base=int(b.get("n", 0)),
            n_current=int(c["n"]),
        )
        if b["direction"] != c["direction"]:
            cmp.notes.append(f"direction {b['direction']} -> {c['direction']}")
        if b.get("config") and c.get("config") and b["config"] != c["config"]:
            cmp.notes.append("config differs from the baseline's (a protocol change?)")
        shared = set(b["values"]) & set(c["values"])
        if shared != set(b["values"]) or shared != set(c["values"]):
            cmp.notes.append(
                f"images differ: {len(shared)} shared of {len(b['values'])} / {len(c['values'])}"
            )
        if c.get("excluded", 0) > b.get("excluded", 0):
            cmp.notes.append(f"maps excluded {b.get('excluded', 0)} -> {c['excluded']}")
        if cmp.base is None or cmp.current is None:
            if cmp.base is not None:  # a number before, no finite score now
                cmp.status = "regressed" if cmp.direction in ("higher", "lower") else "changed"
            elif cmp.current is not None:
                cmp.status = "changed"
            out.append(cmp)
            continue
        worse = cmp.worse
        if worse is None:  # a descriptive number: a change is reported, never a failure
            if abs(cmp.delta) > cmp.allowed + EPS:
                cmp.status = "changed"
            out.append(cmp)
            continue
        if rule.paired:
            pb, pc = _paired(b["values"], c["values"])
            cmp.paired_n = len(pb)
            if len(pb) >= 2:
                cmp.p = paired_p(pb, pc, cmp.direction, rule.test)
            else:
                cmp.notes.append("paired test n/a (fewer than 2 shared images)")
        if worse > cmp.allowed + EPS:
            significant = cmp.p is None or cmp.p < rule.alpha
            cmp.status = "regressed" if significant else "ok"
            if not significant:
                cmp.notes.append(
                    f"worse beyond the margin but not significant (p >= {rule.alpha:g})"
                )
        elif -worse > cmp.allowed + EPS:
            cmp.status = "improved"
        out.append(cmp)
    return out
