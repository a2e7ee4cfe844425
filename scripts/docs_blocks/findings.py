"""Findings written from the committed tables: which method beats which under the paired tests
(``paired.csv``: Holm-corrected p below :data:`.sources.ALPHA`, in the metric's direction), and
comparisons of means where a folder has no paired tests. Each sentence comes with the
:class:`.sources.Claim` objects it states, which tests/test_findings.py re-derives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .sources import ALPHA, Claim, fmt, fmt_p


def wins(paired: pd.DataFrame) -> pd.DataFrame:
    """The significant rows of ``paired.csv`` as ``metric, winner, loser, p_holm, agree``: winner
    by the ``better`` column (the stats module's: p_holm below alpha, the rank-biserial sign);
    ``agree`` whether the means point the same way (a paired test counts images, a mean weighs
    how far each moved: they can disagree)."""
    sig = paired[paired["better"].notna() & (paired["p_holm"] < ALPHA)].copy()
    first = sig["better"] == sig["method_a"]
    sig["winner"] = sig["better"]
    sig["loser"] = sig["method_b"].where(first, sig["method_a"])
    mine = sig["mean_a"].where(first, sig["mean_b"])
    theirs = sig["mean_b"].where(first, sig["mean_a"])
    sig["agree"] = [better_mean(d, a, b) for d, a, b in zip(sig["direction"], mine, theirs)]
    return sig[["metric", "winner", "loser", "p_holm", "agree"]]


def claims_of(folder: str, won: pd.DataFrame) -> list[Claim]:
    """``beats`` for the wins whose means agree, ``split`` for those whose means do not."""
    return [
        Claim("beats" if r.agree else "split", folder, r.metric, r.winner, r.loser)
        for r in won.itertuples()
    ]


def _largest(rows: pd.DataFrame, col: str, names, metrics, top: int) -> str:
    worst = rows.sort_values("p_holm", ascending=False).head(top)
    parts = [
        f"{fmt_p(r.p_holm)}, {names.get(getattr(r, col), getattr(r, col))} on "
        f"{metrics.get(r.metric, r.metric)}"
        for r in worst.itertuples()
    ]
    return "largest corrected p: " + "; then ".join(parts)


def beats_all(
    folder: str,
    paired: pd.DataFrame,
    winner: str | None,
    loser: str | None,
    names: Mapping[str, str],
    metrics: Mapping[str, str],
    top: int = 1,
) -> tuple[str, list[Claim]]:
    """ "every method beats ``loser``" (``winner`` None) or "``winner`` beats every other method"
    (``loser`` None) on every metric of ``paired``, with the largest corrected p-values; the
    exceptions named (no significant difference, or means that point the other way). Claims:
    each significant pair of ``winner`` / ``loser``."""
    me = winner or loser
    involved = paired[(paired["method_a"] == me) | (paired["method_b"] == me)]
    won = wins(involved)
    won = won[won["winner"] == winner] if winner else won[won["loser"] == loser]
    claims = claims_of(folder, won)
    won = won[won["agree"]]
    other = "loser" if winner else "winner"
    subject = (
        f"{names.get(winner, winner)} beats every other method"
        if winner
        else f"every method beats {names.get(loser, loser)}"
    )
    beaten = set(zip(won["metric"], won[other]))
    gaps = [
        (r.metric, r.method_b if r.method_a == me else r.method_a) for r in involved.itertuples()
    ]
    gaps = sorted(g for g in gaps if g not in beaten)
    but = ""
    if gaps:
        but = " except " + ", ".join(f"{names.get(m, m)} on {metrics.get(k, k)}" for k, m in gaps)
    return f"{subject} on every score{but} ({_largest(won, other, names, metrics, top)})", claims


def ties(
    folder: str, paired: pd.DataFrame, names: Mapping[str, str], metrics: Mapping[str, str]
) -> tuple[str, list[Claim]]:
    """The pairs without a significant difference, each with its corrected p."""
    tied = paired[~(paired["p_holm"] < ALPHA)]
    parts = [
        f"{names.get(r.method_a, r.method_a)} vs {names.get(r.method_b, r.method_b)} on "
        f"{metrics.get(r.metric, r.metric)} (p = {fmt_p(r.p_holm)})"
        for r in tied.itertuples()
    ]
    claims = [Claim("tie", folder, r.metric, r.method_a, r.method_b) for r in tied.itertuples()]
    return "; ".join(parts), claims


def others(
    folder: str,
    paired: pd.DataFrame,
    skip: Sequence[str],
    names: Mapping[str, str],
    metrics: Mapping[str, str],
) -> tuple[str, list[Claim]]:
    """The significant pairs between methods not in ``skip`` whose means agree: per winner and
    loser, the metrics. Claims: every significant pair between them (:func:`claims_of`)."""
    rest = paired[~paired["method_a"].isin(skip) & ~paired["method_b"].isin(skip)]
    won = wins(rest)
    parts = []
    for (w, lo), g in won[won["agree"]].groupby(["winner", "loser"], sort=True):
        where = ", ".join(metrics.get(m, m) for m in g["metric"])
        parts.append(
            f"{names.get(w, w)} beats {names.get(lo, lo)} on {where} "
            f"(corrected p ≤ {fmt_p(g['p_holm'].max())})"
        )
    return "; ".join(parts), claims_of(folder, won)


def splits(paired: pd.DataFrame, names: Mapping[str, str], metrics: Mapping[str, str]) -> str:
    """The significant pairs whose means point the other way: the test's winner (more images)
    and the means' (their claims come with :func:`others` or :func:`beats_all`)."""
    won = wins(paired)
    parts = []
    for r in won[~won["agree"]].itertuples():
        pair = paired[
            (paired["metric"] == r.metric)
            & paired["method_a"].isin([r.winner, r.loser])
            & paired["method_b"].isin([r.winner, r.loser])
        ].iloc[0]
        means = {pair["method_a"]: pair["mean_a"], pair["method_b"]: pair["mean_b"]}
        w, lo = names.get(r.winner, r.winner), names.get(r.loser, r.loser)
        parts.append(
            f"on {metrics.get(r.metric, r.metric)}, more images favour {w} over {lo} (corrected "
            f"p {fmt_p(r.p_holm)}) while the means favour {lo} ({fmt(means[r.loser])} vs "
            f"{fmt(means[r.winner])})"
        )
    return "; ".join(parts)


def better_mean(direction: str, a: float, b: float) -> bool:
    """Whether mean ``a`` is better than ``b`` by ``direction`` (higher / lower)."""
    return a > b if direction == "higher" else a < b


def mean_exceptions(
    summary: pd.DataFrame, folder: str, baseline: str, metrics: Sequence[str]
) -> tuple[list[tuple[str, str, float, float]], list[Claim]]:
    """Per method and metric of ``metrics``: whether its mean is better than ``baseline``'s.
    Returns the exceptions ``(method, metric, mean, baseline mean)`` and the claims of the rest."""
    s = summary[summary["metric"].isin(metrics)]
    base = s[s["method"] == baseline].set_index("metric")
    exceptions, claims = [], []
    for r in s[s["method"] != baseline].itertuples():
        b = float(base.loc[r.metric, "mean"])
        if better_mean(r.direction, r.mean, b):
            claims.append(Claim("mean_better", folder, r.metric, r.method, baseline))
        else:
            exceptions.append((r.method, r.metric, float(r.mean), b))
    return exceptions, claims


#: Means closer than this are equal (float rounding of the same computation: ~1e-5 here).
EQUAL = 1e-4


def equal_methods(
    summary: pd.DataFrame, folder: str, metrics: Sequence[str]
) -> tuple[list[tuple[str, str]], list[Claim]]:
    """Pairs of methods whose means are equal (within :data:`EQUAL`) in every one of ``metrics``."""
    wide = summary[summary["metric"].isin(metrics)].pivot(
        index="method", columns="metric", values="mean"
    )[list(metrics)]
    methods = sorted(wide.index)
    pairs = [
        (a, b)
        for i, a in enumerate(methods)
        for b in methods[i + 1 :]
        if ((wide.loc[a] - wide.loc[b]).abs() < EQUAL).all()
    ]
    claims = [Claim("equal", folder, ",".join(metrics), a, b) for a, b in pairs]
    return pairs, claims


def ranked(summary: pd.DataFrame, metric: str, k: int, lowest: bool, skip=()) -> list[str]:
    """The ``k`` methods of the lowest (or highest) means of ``metric``, as ``name value``;
    methods whose means print alike share one entry (```gradcam`/`xgradcam` 0.135``)."""
    s = summary[(summary["metric"] == metric) & ~summary["method"].isin(skip)].dropna(
        subset=["mean"]
    )
    s = s.assign(key=s["mean"].map(fmt)).sort_values(["mean", "method"], ascending=lowest)
    out = []
    for _, g in s.groupby("key", sort=False):
        out.append(f"`{'`/`'.join(sorted(g['method']))}` {fmt(g['mean'].iloc[0])}")
        if len(out) == k:
            break
    return out
