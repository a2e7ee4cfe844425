"""The blocks of the default benchmark, the scenes benchmark and the paper-tables example:
their tables from ``summary.csv`` / ``table.md`` / the ``.tex``, their findings from
``paired.csv`` and ``friedman.csv``, their provenance from ``MANIFEST.json``."""

from __future__ import annotations

from bench.results.stats import interval_text
from bench.results.summary import format_table

from .findings import beats_all, claims_of, others, splits, ties, wins
from .sources import ALPHA, Claim, Rendered, Sources, fmt, fmt_p, md_tables

DEFAULT = "default_benchmark"
SCENES = "scenes_benchmark"
EXAMPLE = "paper_example"
NAMES = {
    "gradcam": "Grad-CAM",
    "layercam": "LayerCAM",
    "integrated_gradients": "integrated gradients",
    "gradient": "gradient saliency",
    "random": "random",
}
DEFAULT_METRICS = {
    "deletion": "deletion",
    "insertion": "insertion",
    "pointing_game": "pointing game",
}
SCENES_METRICS = {
    "class_sensitivity": "class sensitivity",
    "class_sensitivity.own_share": "own-object share",
    "class_sensitivity.pointing": "pointing per pair",
    "energy_pointing_game": "energy pointing",
    "pointing_game": "pointing game",
}


def made(src: Sources, folder: str) -> str:
    """Where and when a reference folder was made, from its manifest's first run: its machine,
    load and commit where recorded, else a pointer to the manifest."""
    run = src.manifest(f"reference/{folder}")["runs"][0]
    if run["machine"].startswith("unrecorded"):
        return f"made {run['date']}; its `MANIFEST.json` says what is known of how"
    return f"made {run['date']} at {run['commit']} on {run['machine']}, {run['load']}"


def paired_paragraph(
    src: Sources, folder: str, metrics: dict[str, str], top: str | None, images: str
) -> Rendered:
    """What a folder's paired tests support: every method against random, ``top`` against every
    other method (when given), the remaining significant pairs, and the ties."""
    paired = src.paired(folder)
    claims: list[Claim] = []
    text, c = beats_all(folder, paired, None, "random", NAMES, metrics)
    claims += c
    parts = [text]
    skip = ["random"]
    if top:
        text, c = beats_all(folder, paired, top, None, NAMES, metrics, top=3)
        claims += c
        parts.append(text)
        skip.append(top)
    rest, c = others(folder, paired, skip, NAMES, metrics)
    claims += c
    tied, c = ties(folder, paired, NAMES, metrics)
    claims += c
    split = splits(paired, NAMES, metrics)
    lines = [
        f"What the paired tests of `paired.md` support (Wilcoxon signed-rank over the same "
        f"{images}, Holm-corrected within each metric; each sentence re-derived from `paired.csv` "
        f"by `tests/test_findings.py`): {'; and '.join(parts)}."
    ]
    if rest:
        lines.append(f"Among the others: {rest}.")
    if split:
        lines.append(f"Where the test and the means disagree: {split}.")
    lines.append(f"**Not significant**: {tied}." if tied else "Every pair differs significantly.")
    return Rendered(" ".join(lines), tuple(claims))


def default_benchmark(src: Sources) -> Rendered:
    s = src.summary(DEFAULT)
    n = int(s["n"].max())
    found = paired_paragraph(src, DEFAULT, DEFAULT_METRICS, None, f"{n} images")
    text = "\n\n".join(
        [
            f"Output of `make bench` (`results/reference/{DEFAULT}/`, {made(src, DEFAULT)}; its "
            "`MANIFEST.json` has the commands; `python scripts/check_reference.py <sweep> "
            f"results/reference/{DEFAULT}` compares a sweep of yours with it):",
            format_table(s),
            found.text,
        ]
    )
    return Rendered(text, found.claims)


def scenes_table(src: Sources) -> Rendered:
    """The scenes table: methods by class sensitivity, best of each column in bold."""
    s = src.summary(SCENES)
    order = s[s["metric"] == "class_sensitivity"].sort_values("mean", ascending=False)["method"]
    head = "| method | " + " | ".join(f"{v} ↑" for v in SCENES_METRICS.values()) + " |"
    lines = [head, "|---" * (len(SCENES_METRICS) + 1) + "|"]
    for method in order:
        cells = []
        for metric in SCENES_METRICS:
            col = s[s["metric"] == metric]
            r = col[col["method"] == method].iloc[0]
            best = r["mean"] == (
                col["mean"].max() if r["direction"] == "higher" else col["mean"].min()
            )
            cell = interval_text(r["mean"], r["ci_low"], r["ci_high"])
            cells.append(f"**{cell}**" if best else cell)
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    n = int(s["n"].max())
    intro = (
        f"{n} pairs, mean and 95% BCa bootstrap interval (`results/reference/{SCENES}/`, "
        f"{made(src, SCENES)}; the paired tests in `paired.md`):"
    )
    return Rendered(intro + "\n\n" + "\n".join(lines))


def scenes_findings(src: Sources) -> Rendered:
    n = int(src.summary(SCENES)["n"].max())
    found = paired_paragraph(src, SCENES, SCENES_METRICS, "gradcam", f"{n} pairs")
    m = lambda method, metric: src.mean(SCENES, method, metric)  # noqa: E731
    lc, gc = "layercam", "gradcam"
    own = m(lc, "class_sensitivity.own_share")
    means = (
        f"The plain pointing game puts LayerCAM next to Grad-CAM ({fmt(m(lc, 'pointing_game'))} vs "
        f"{fmt(m(gc, 'pointing_game'))}); class sensitivity does not ({fmt(m(lc, 'class_sensitivity'))} "
        f"vs {fmt(m(gc, 'class_sensitivity'))}: LayerCAM's map for one class puts {fmt(1 - own)} of "
        "its mass on the other class's object, on average)."
    )
    return Rendered(found.text + "\n" + means, found.claims)


def example_table(src: Sources) -> Rendered:
    """``table.md`` of the paper-tables example: its one table."""
    text = src.text(f"results/reference/{EXAMPLE}/table.md")
    table = [line for line in text.split("\n") if line.startswith("|")]
    return Rendered("\n".join(table))


def example_latex(src: Sources) -> Rendered:
    tex = src.text(f"results/reference/{EXAMPLE}/table_shapes_cnn_shapes.tex").rstrip("\n")
    return Rendered("```latex\n" + tex + "\n```")


def example_paired(src: Sources) -> Rendered:
    """The deletion rows of the example's ``paired.md``, Friedman's line and what ``better`` says."""
    f = src.friedman(EXAMPLE)
    fd = f[f["metric"] == "deletion"].iloc[0]
    sections = src.text(f"results/reference/{EXAMPLE}/paired.md").split("### ")
    deletion = next(
        s for s in sections if s.startswith("model=shapes_cnn dataset=shapes metric=deletion\n")
    )
    rows = md_tables("### " + deletion)[0]
    cols = [
        "method_a",
        "method_b",
        "n_pairs",
        "median_diff",
        "rank_biserial",
        "p",
        "p_holm",
        "better",
    ]
    table = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    table += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    paired = src.paired(EXAMPLE)
    d = paired[paired["metric"] == "deletion"]
    won, tied = wins(d), d[~(d["p_holm"] < ALPHA)]
    claims = claims_of(EXAMPLE, won)
    claims += [Claim("tie", EXAMPLE, "deletion", r.method_a, r.method_b) for r in tied.itertuples()]
    named = "; ".join(f"{r.winner} over {r.loser}" for r in won.itertuples())
    empty = "; ".join(
        f"{r.method_a} vs {r.method_b}, p_holm = {fmt_p(r.p_holm)}" for r in tied.itertuples()
    )
    text = "\n\n".join(
        [
            f"and from `paired.md` (deletion; Friedman χ² = {fd['statistic']:.3g}, p = "
            f"{fmt_p(fd['p'])}, W = {fd['kendall_w']:.2g} over the {int(fd['k'])} methods):",
            "\n".join(table),
            f"`better` names a method only where the Holm-corrected p is below {ALPHA} ({named or 'none'} "
            f"here; not significant after the correction: {empty or 'none'}, so those cells are "
            "empty), by the sign of the rank-biserial correlation.",
        ]
    )
    return Rendered(text, tuple(claims))
