"""Every finding the docs state is re-derived here from the committed results it names, by code
of its own: "A beats B on M" needs the Holm-corrected p of the pair in ``paired.csv`` below
0.05 and the test's effect (rank-biserial) and the means in M's direction; "more images favour A,
the means B" the test's effect one way and the means the other; "not significant" needs the p at
or above 0.05; a comparison of means (folders without paired tests) needs the means
of ``summary.csv`` in that order. The claims are those the generated blocks state
(scripts/docs_blocks/), so a sentence whose table was re-made the other way fails here, and no
sentence of that kind may stand outside a generated block."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from bench import ROOT
from tests._docs_blocks import submodule

cli = submodule("cli")
findings = submodule("findings")
markers = submodule("markers")
sources = submodule("sources")

ALPHA = 0.05
CLAIMS = sorted(
    {c for rendered in cli.render(ROOT).values() for c in rendered.claims},
    key=lambda c: (c.source, c.kind, c.metric, c.better, c.worse),
)


def _csv(folder: str, name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "results" / "reference" / folder / name)


def _pair(claim) -> pd.Series:
    p = _csv(claim.source, "paired.csv")
    hit = p[
        (p["metric"] == claim.metric)
        & (
            ((p["method_a"] == claim.better) & (p["method_b"] == claim.worse))
            | ((p["method_a"] == claim.worse) & (p["method_b"] == claim.better))
        )
    ]
    assert len(hit) == 1, f"paired.csv has {len(hit)} rows for {claim}"
    return hit.iloc[0]


def _higher(folder: str, metric: str) -> bool:
    s = _csv(folder, "summary.csv")
    row = s[s["metric"] == metric].iloc[0]
    return row["direction"] == "higher" if "direction" in s else bool(row["higher_is_better"])


def _means(folder: str, metric: str) -> dict[str, float]:
    s = _csv(folder, "summary.csv")
    s = s[s["metric"] == metric]
    return dict(zip(s["method"], s["mean"]))


def check(claim) -> None:
    if claim.kind in ("beats", "split", "tie"):
        r = _pair(claim)
        if claim.kind == "tie":
            assert not r["p_holm"] < ALPHA, f"{claim}: p_holm {r['p_holm']:.3g} is below {ALPHA}"
            return
        assert r["p_holm"] < ALPHA, f"{claim}: p_holm {r['p_holm']:.3g} is not below {ALPHA}"
        sign = 1 if r["method_a"] == claim.better else -1  # + : better is method a
        up = 1 if _higher(claim.source, claim.metric) else -1
        assert sign * up * r["rank_biserial"] > 0, f"{claim}: the test points the other way"
        means = sign * up * (r["mean_a"] - r["mean_b"])
        if claim.kind == "beats":
            assert means > 0, f"{claim}: the means point the other way"
        else:  # "split": stated as more images favouring one method and the means the other
            assert means < 0, f"{claim}: the means agree with the test"
    elif claim.kind == "mean_better":
        m = _means(claim.source, claim.metric)
        up = _higher(claim.source, claim.metric)
        a, b = m[claim.better], m[claim.worse]
        assert (a > b) if up else (a < b), f"{claim}: means {a:.4g} vs {b:.4g}"
    elif claim.kind == "equal":
        for metric in claim.metric.split(","):
            m = _means(claim.source, metric)
            assert abs(m[claim.better] - m[claim.worse]) < 1e-4, f"{claim}: {metric} differs"
    else:
        raise AssertionError(f"unknown kind of claim {claim.kind}")


def test_the_docs_state_findings_of_every_kind():
    kinds = {c.kind for c in CLAIMS}
    assert {"beats", "tie", "mean_better", "equal"} <= kinds
    assert {c.source for c in CLAIMS if c.kind == "beats"} >= {
        "default_benchmark",
        "scenes_benchmark",
        "paper_example",
    }


@pytest.mark.parametrize(
    "claim",
    CLAIMS,
    ids=[f"{c.source}:{c.kind}:{c.metric}:{c.better}-{c.worse}" for c in CLAIMS],
)
def test_each_stated_finding_holds_in_the_committed_results(claim):
    check(claim)


FINDING = re.compile(r"\b(beats?|beating|outperforms?|worse than|better than)\b", re.IGNORECASE)


def test_no_finding_is_typed_outside_a_generated_block():
    """A sentence of the form "A beats B" lives in a generated block, where it is written from
    the tables and re-derived above; typed elsewhere it could outlive its table."""
    loose = []
    for path in markers.doc_files(ROOT):
        if path.name == "CHANGELOG.md":  # history: what a release changed, not a finding
            continue
        lines = path.read_text().split("\n")
        inside = set()
        for block in markers.find_blocks(path):
            inside |= set(range(block.start, block.end + 1))
        loose += [
            f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}"
            for i, line in enumerate(lines)
            if i not in inside and FINDING.search(line)
        ]
    assert not loose, "\n".join(loose)


def _paired(rows):
    cols = ["metric", "method_a", "method_b", "p_holm", "better", "mean_a", "mean_b"]
    return pd.DataFrame(rows, columns=cols).assign(direction="higher")


def test_a_sentence_names_the_exceptions_and_the_pairs_that_are_not_significant():
    paired = _paired(
        [
            ("m", "a", "random", 1e-5, "a", 0.9, 0.1),
            ("m", "b", "random", 0.2, None, 0.5, 0.1),
            ("n", "a", "random", 1e-6, "a", 0.9, 0.1),
            ("n", "b", "random", 0.01, "b", 0.5, 0.1),
            ("n", "c", "random", 0.02, "c", 0.05, 0.1),  # more images, but the means disagree
        ]
    )
    text, claims = findings.beats_all("x", paired, None, "random", {}, {})
    assert text.startswith("every method beats random on every score except b on m, c on n")
    assert "largest corrected p: 0.010, b on n" in text
    assert {(c.kind, c.metric, c.better) for c in claims} == {
        ("beats", "m", "a"),
        ("beats", "n", "a"),
        ("beats", "n", "b"),
        ("split", "n", "c"),
    }
    assert "more images favour c over random (corrected p 0.020) while the means favour random" in (
        findings.splits(paired, {}, {})
    )
    text, claims = findings.ties("x", paired, {}, {})
    assert text == "b vs random on m (p = 0.20)"
    assert [c.kind for c in claims] == ["tie"]
