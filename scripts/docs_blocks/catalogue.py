"""The catalogue's three tables (``results/reference/catalogue*/summary.csv``: means only, as
their summaries carry no paired tests) and the findings written from them: comparisons of
means, each stated with the :class:`.sources.Claim` that tests/test_findings.py re-checks."""

from __future__ import annotations

import math

import pandas as pd

from .findings import EQUAL, equal_methods, mean_exceptions, ranked
from .sources import Claim, Rendered, Sources, fmt

CHEAP, HEAVY, SANITY = "catalogue", "catalogue_heavy", "catalogue_sanity"
#: Columns of each table: metric -> header (the arrow comes from the metric's direction).
COLUMNS = {
    CHEAP: {
        "deletion": "deletion",
        "insertion": "insertion",
        "pointing_game": "pointing",
        "energy_pointing_game": "energy PG",
        "relevance_mass_accuracy": "rel. mass",
        "relevance_rank_accuracy": "rel. rank",
        "complexity": "complexity",
        "sparseness": "sparseness",
        "efficient_mprt": "eMPRT",
        "random_logit.spearman_abs": "random logit ρ",
    },
    HEAVY: {
        "road_abc": "ROAD ABC",
        "pixel_flipping_abc": "pixel-flip ABC",
        "dauc": "DAUC",
        "iauc": "IAUC",
        "dc": "DC",
        "ic": "IC",
        "model_randomisation_cascading.spearman_abs": "cascading ρ",
        "model_randomisation_cascading.ssim": "cascading SSIM",
        "data_randomisation.spearman_abs": "data-rand. ρ",
        "infidelity": "infidelity",
        "max_sensitivity": "max-sens.",
    },
    SANITY: {
        "mprt.spearman_abs": "MPRT ρ",
        "model_randomisation_independent.spearman_abs": "independent ρ",
        "model_randomisation_independent.ssim": "independent SSIM",
        "model_randomisation_independent.hog": "independent HOG",
        "smooth_mprt.spearman_abs": "smooth MPRT ρ",
    },
}
#: Maps that ignore the model: they must fail every sanity check.
MODEL_FREE = ("centre_gaussian", "random", "sobel")
#: A heavy-table cell missing from its own folder comes from the sanity folder's first images.
FROM_SANITY = "†"


def _arrow(row: pd.Series) -> str:
    return "↑" if bool(row["higher_is_better"]) else "↓"


def _marks(src: Sources, folder: str) -> list[tuple[str, str, str]]:
    """``(mark, method, metric)`` of a folder's manifest (``*`` = every metric of the method)."""
    out = []
    for mark, spec in src.manifest(f"reference/{folder}").get("marks", {}).items():
        out += [(mark, m, k) for m in spec["methods"] for k in spec["metrics"]]
    return out


def _cell(rows: pd.DataFrame, marks: str, expected: int) -> str:
    if rows.empty:
        return "not run"
    r = rows.iloc[0]
    if not math.isfinite(r["mean"]):
        return f"NaN§{marks}"
    n = int(r["n"])
    return fmt(r["mean"]) + marks + (f" (n={n})" if n < expected else "")


def table(src: Sources, folder: str) -> str:
    """The Markdown table of ``folder``'s :data:`COLUMNS`: a row per method, means to 3 digits,
    ``(n=k)`` where a cell has fewer images than the method's others in the same folder."""
    s = src.summary(folder)
    sanity = src.summary(SANITY)
    marks = _marks(src, folder)
    cols = COLUMNS[folder]
    arrows = {m: _arrow(s[s["metric"] == m].iloc[0]) for m in cols if m in set(s["metric"])}
    arrows |= {m: _arrow(sanity[sanity["metric"] == m].iloc[0]) for m in cols if m not in arrows}
    lines = ["| method | " + " | ".join(f"{h} {arrows[m]}" for m, h in cols.items()) + " |"]
    lines.append("|---" * (len(cols) + 1) + "|")
    for method in sorted(s["method"].unique()):
        own, spare = s[s["method"] == method], sanity[sanity["method"] == method]
        row_marks = "".join(k for k, m, metric in marks if m == method and metric == "(method)")
        cells = []
        for metric in cols:
            mine = own[own["metric"] == metric]
            extra = "".join(k for k, m, mm in marks if m == method and mm in (metric, "*"))
            if mine.empty and folder == HEAVY:
                mine, extra, pool = spare[spare["metric"] == metric], extra + FROM_SANITY, spare
            else:
                pool = own
            cells.append(_cell(mine, extra, int(pool["n"].max())))
        lines.append(f"| `{method}`{row_marks} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cheap_table(src: Sources) -> Rendered:
    return Rendered(table(src, CHEAP))


def heavy_table(src: Sources) -> Rendered:
    return Rendered(table(src, HEAVY))


def sanity_table(src: Sources) -> Rendered:
    return Rendered(table(src, SANITY))


def _listed(items: list[str]) -> str:
    return ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]


def model_free(src: Sources, folder: str, metrics: dict[str, float]) -> str:
    """The methods whose means equal the given values on every given metric (the maps that fail
    the checks as they must), checked to be exactly :data:`MODEL_FREE`."""
    s = src.summary(folder)
    hits = None
    for metric, value in metrics.items():
        col = s[s["metric"] == metric]
        these = set(col[(col["mean"] - value).abs() < 5e-4]["method"])
        hits = these if hits is None else hits & these
    if hits != set(MODEL_FREE):
        raise ValueError(
            f"{folder}: the maps scoring {metrics} are {sorted(hits)}, not {MODEL_FREE}"
        )
    return _listed([f"`{m}`" for m in MODEL_FREE])


def cheap_findings(src: Sources) -> Rendered:
    s = src.summary(CHEAP)
    n = int(s["n"].max())
    trio = ["deletion", "insertion", "pointing_game"]
    exc, claims = mean_exceptions(s, CHEAP, "random", trio)
    claims += [Claim("mean_better", CHEAP, k, "random", m) for m, k, _, _ in exc]
    if exc:
        but = " except " + _listed(
            [
                f"`{m}` on {k.replace('_', ' ')} ({fmt(v)} vs random's {fmt(b)})"
                for m, k, v, b in exc
            ]
        )
    else:
        but = ""
    eq, c = equal_methods(s, CHEAP, [m for m in COLUMNS[CHEAP]])
    claims += c
    free = model_free(src, CHEAP, {"efficient_mprt": 0.0, "random_logit.spearman_abs": 1.0})
    lowest = ranked(s, "random_logit.spearman_abs", 3, lowest=True)
    text = (
        f"Means only, n = {n}: the per-image rows of these sweeps are not committed, so no paired "
        "test stands behind a difference here (read differences under ~0.05 as noise). Every "
        "method's mean is better than `random`'s on deletion, insertion and the pointing game"
        f"{but}. Equal (within {EQUAL:.0e}) in every column above: ".replace("e-0", "e-")
        + "; ".join(f"`{a}` and `{b}`" for a, b in eq)
        + f". Efficient MPRT 0.000 and random-logit ρ 1.000: {free}. Lowest random-logit ρ (the "
        f"most class-specific maps): {', '.join(lowest)}."
    )
    return Rendered(text, tuple(claims))


def heavy_findings(src: Sources) -> Rendered:
    s = pd.concat([src.summary(HEAVY), _only_in(src.summary(SANITY), src.summary(HEAVY))])
    free = model_free(
        src,
        HEAVY,
        {
            "model_randomisation_cascading.spearman_abs": 1.0,
            "model_randomisation_cascading.ssim": 1.0,
            "data_randomisation.spearman_abs": 1.0,
        },
    )
    road = s[(s["metric"] == "road_abc") & ((s["mean"] - 1).abs() < 5e-4)]["method"]
    ms = s[(s["metric"] == "max_sensitivity") & ~s["method"].isin(MODEL_FREE)]
    robust = ms[ms["mean"] < 0.0085]["method"]
    inf = s[s["metric"] == "infidelity"]["mean"]
    rand = lambda metric: fmt(src.mean(HEAVY, "random", metric))  # noqa: E731
    text = (
        f"Means only (n as in the table). Cascading ρ, cascading SSIM and data-randomisation ρ of "
        f"1.000: {free}. ROAD ABC of 1.000: {_listed([f'`{m}`' for m in sorted(road)])}. Best "
        f"pixel-flipping ABC: {ranked(s, 'pixel_flipping_abc', 1, lowest=False)[0]}; lowest DAUC: "
        f"{', '.join(ranked(s, 'dauc', 2, lowest=True))}. Highest max-sensitivity (the least "
        f"robust maps): {', '.join(ranked(s, 'max_sensitivity', 6, lowest=False, skip=MODEL_FREE))} "
        f"(`random` {rand('max_sensitivity')}); lowest: "
        f"{ranked(s, 'max_sensitivity', 1, lowest=True, skip=MODEL_FREE)[0]}, and at most 0.008: "
        f"{_listed([f'`{m}`' for m in sorted(robust)])} (the model-independent maps aside). Infidelity spans {fmt(inf.min())}–"
        f"{fmt(inf.max())} (`random` {rand('infidelity')})."
    )
    return Rendered(text)


def _only_in(sanity: pd.DataFrame, heavy: pd.DataFrame) -> pd.DataFrame:
    """The sanity folder's cells of the heavy table's metrics that the heavy folder lacks (†)."""
    have = set(zip(heavy["method"], heavy["metric"]))
    keep = [
        (m, k) not in have and k in COLUMNS[HEAVY]
        for m, k in zip(sanity["method"], sanity["metric"])
    ]
    return sanity[keep]


#: Methods whose MPRT and smooth MPRT are set side by side in the sanity findings.
SMOOTHED = (
    "integrated_gradients",
    "input_x_gradient",
    "lrp",
    "deeplift",
    "gradient",
    "smoothgrad",
    "vargrad",
)


def sanity_findings(src: Sources) -> Rendered:
    s = src.summary(SANITY)
    n = int(s["n"].max())
    free = model_free(
        src, SANITY, {m: 1.0 for m in COLUMNS[SANITY] if m != "smooth_mprt.spearman_abs"}
    )
    mprt, smooth = "mprt.spearman_abs", "smooth_mprt.spearman_abs"
    pairs: list[str] = []
    moved: dict[str, list[str]] = {"lower by more than 0.05": [], "within 0.05": [], "higher": []}
    for m in SMOOTHED:
        a, b = src.mean(SANITY, m, mprt), src.mean(SANITY, m, smooth)
        pairs.append(f"`{m}` {fmt(a)} → {fmt(b)}")
        way = "lower by more than 0.05" if b < a - 0.05 else "within 0.05"
        way = "higher" if b > a + 0.05 else way
        moved[way].append(f"`{m}`")
    text = (
        f"Means only, n = {n}: indicative only. Every similarity 1.000: {free}. Lowest MPRT ρ "
        f"(the maps that change most as the top layers are randomised): "
        f"{', '.join(ranked(s, mprt, 3, lowest=True))}; lowest smooth MPRT ρ: "
        f"{', '.join(ranked(s, smooth, 3, lowest=True))}. Highest MPRT ρ of the maps that depend "
        f"on the model: {', '.join(ranked(s, mprt, 5, lowest=False, skip=MODEL_FREE))}. MPRT → "
        f"smooth MPRT: {'; '.join(pairs)} ("
        + "; ".join(f"{k}: {_listed(v)}" for k, v in moved.items() if v)
        + ")."
    )
    return Rendered(text)
