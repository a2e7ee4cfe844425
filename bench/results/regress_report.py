"""The Markdown of a regression check (:mod:`bench.results.regress`): the diff table of every
cell and the report a CI job can post (verdict, failing cells, table, tolerance, provenance)."""

from __future__ import annotations

from typing import Any

from bench.results.collate import ARROWS as ARROW
from bench.results.regress import FAILING, Comparison, RegressionCheck, Tolerances, fmt

ICONS = {
    "ok": "ok",
    "regressed": "**REGRESSED**",
    "missing": "**MISSING**",
    "improved": "improved",
    "changed": "changed",
    "new": "new",
}


def format_diff(comparisons: list[Comparison]) -> str:
    """The diff table (Markdown): one row per cell."""
    header = [
        "model",
        "dataset",
        "method",
        "metric",
        "baseline",
        "current",
        "Δ",
        "allowed",
        "n",
        "p",
        "status",
        "notes",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in comparisons:
        model, dataset, method, metric = c.key
        delta = c.delta
        lines.append(
            "| "
            + " | ".join(
                [
                    model,
                    dataset,
                    method,
                    f"{metric} {ARROW.get(c.direction, '')}".rstrip(),
                    fmt(c.base),
                    fmt(c.current),
                    "—" if delta is None else f"{delta:+.4f}",
                    "—" if c.allowed is None else f"±{c.allowed:.4f}",
                    f"{c.n_base}/{c.n_current}",
                    "—" if c.p is None else f"{c.p:.2g}",
                    ICONS[c.status],
                    "; ".join(c.notes),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def format_report(check: RegressionCheck) -> str:
    """The Markdown report a CI job can post: verdict, the failing cells, the table, provenance
    (versions, and the machines of the baseline and of the current run)."""
    comparisons, baseline, failing = check.comparisons, check.baseline, check.failing
    counts = {s: sum(c.status == s for c in comparisons) for s in ICONS}
    if failing:
        names = ", ".join(f"`{c.key[2]}` / `{c.key[3]}`" for c in failing)
        verdict = f"❌ **{len(failing)} regression(s)** of {len(comparisons)} cells: {names}."
    else:
        verdict = f"✅ **No regression** in {len(comparisons)} cells."
    extra = ", ".join(f"{n} {s}" for s, n in counts.items() if n and s not in ("ok", *FAILING))
    if extra:
        verdict += f" ({extra}.)"
    tolerance = tolerance_text(check.tol)
    ver = versions_text
    parts = [
        "## Attribution regression check",
        verdict,
        *(["\n".join(f"- {c.line()}" for c in failing)] if failing else []),
        format_diff(comparisons),
        tolerance,
        f"Baseline `{check.baseline_path}` ({baseline.get('created', '?')}; {ver(baseline.get('versions') or {})})"
        + (f", made by `{baseline['command']}`" if baseline.get("command") else "")
        + f". Current: `{' '.join(map(str, check.current))}` ({ver(check.versions)}).",
    ]
    parts.append(machines(baseline.get("machine"), check.machine))
    if check.notes:
        parts.append("\n".join(f"- {n}" for n in check.notes))
    return "\n\n".join(parts) + "\n"


def _machine(m: dict[str, Any] | None) -> str:
    if not m or not m.get("cpu"):
        return "an unrecorded machine"
    return f"{m['cpu']} ({m.get('platform', 'platform unrecorded')})"


def machines(base: dict[str, Any] | None, current: dict[str, Any] | None) -> str:
    """Where the baseline and the current run were made, and what that means for the scores."""
    line = f"Baseline made on {_machine(base)}; current run on {_machine(current)}."
    same = bool(base and current and base.get("cpu") == current.get("cpu"))
    if not same:
        line += (
            " On another CPU, scores that rank pixels or take a maximum may move for an image "
            "whose map has near-ties (docs/stability.md); the tolerances allow for it."
        )
    return line


def tolerance_text(tol: Tolerances) -> str:
    """One sentence: the default margin and every metric's own (plain text, no Markdown)."""
    d = tol.default
    return (
        f"Tolerance ({tol.source}): worse by more than max({d.abs:g}, {d.rel:g} × |baseline|)"
        + (f", paired {d.test}-test p < {d.alpha:g}" if d.paired else "")
        + "".join(
            f"; {m}: max({r.abs:g}, {r.rel:g} × |baseline|)"
            + (f", paired p < {r.alpha:g}" if r.paired else "")
            for m, r in tol.metrics.items()
        )
        + "."
    )


def versions_text(v: dict) -> str:
    """``attribution-bench 0.1.0, torch 2.x, git abc123`` of a record's or baseline's versions."""
    keys = ("attribution-bench", "torch", "git")
    return ", ".join(f"{k} {v[k]}" for k in keys if k in v) or "unknown"
