"""The documents say what the code does: every protocol reference resolves, the example error of
docs/sweeps.md is the real one, and the README and docs/ name only configs that exist."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench import ROOT
from bench.config.overrides import check_overrides, options
from bench.core.errors import ConfigError

PROTOCOLS = ROOT / "docs" / "PROTOCOLS.md"
REFERENCE = re.compile(r"PROTOCOLS\.md\s+§(\d+)((?:\s*(?:,|and)\s*§\d+)*)")
SOURCES = [
    *sorted(ROOT.glob("bench/**/*.py")),
    *sorted(ROOT.glob("methods/**/*.py")),
    *sorted(ROOT.glob("metrics/**/*.py")),
    *sorted(ROOT.glob("scripts/*.py")),
    *sorted(ROOT.glob("tests/**/*.py")),
    *sorted(ROOT.glob("conf/**/*.yaml")),
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *[p for p in sorted(ROOT.glob("docs/*.md")) if p.name != "PROTOCOLS.md"],
]
PAGES = [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]


def cited_sections() -> dict[int, list[str]]:
    """Section number -> the files that cite that section of the protocols document."""
    out: dict[int, list[str]] = {}
    for path in SOURCES:
        for m in REFERENCE.finditer(path.read_text()):
            for n in [m.group(1), *re.findall(r"§(\d+)", m.group(2))]:
                out.setdefault(int(n), []).append(str(path.relative_to(ROOT)))
    return out


def test_every_protocol_reference_resolves_to_a_section():
    cited = cited_sections()
    assert len(cited) >= 5, "the docstrings cite the protocols document"
    headings = {
        int(m.group(1))
        for m in re.finditer(r"^## (\d+)\. ", PROTOCOLS.read_text(), flags=re.MULTILINE)
    }
    missing = {n: files for n, files in cited.items() if n not in headings}
    assert not missing, missing


def test_references_cite_the_repositorys_document():
    bare = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if re.search(r"(?<!docs/)PROTOCOLS\.md §", p.read_text())
    ]
    assert not bare, f"cite docs/PROTOCOLS.md, the repository's document: {bare}"


def test_the_docs_example_error_is_the_real_one():
    page = (ROOT / "docs" / "sweeps.md").read_text()
    quoted = re.search(r"\$ bench method=gradcm\n(error: .*)\n", page)
    assert quoted, "docs/sweeps.md shows what a misspelt method prints"
    with pytest.raises(ConfigError) as err:
        check_overrides(["method=gradcm"])
    assert quoted.group(1) == f"error: {err.value}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_docs_name_only_configs_that_exist(page):
    text = page.read_text().replace("method=gradcm", "")  # the misspelt example
    for group in ("model", "dataset", "method", "experiment"):
        for name in re.findall(rf"\b{group}=([a-z_0-9]+)", text):
            assert name in options(group), f"{page.name}: {group}={name}"


@pytest.mark.slow
def test_the_python_examples_output_is_what_it_prints():
    """docs/results.md's "From Python" example, run as written: it prints the block after it."""
    page = (ROOT / "docs" / "results.md").read_text()
    section = page.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"prints \(.*?\n\n```\n(.*?)```", section, re.S).group(1)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [line.rstrip() for line in done.stdout.strip().splitlines()]
    assert printed == [line.rstrip() for line in shown.strip().splitlines()]
