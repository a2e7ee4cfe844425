"""The documentation builds and holds together (issue 25): the strict mkdocs build passes, every
page of docs/ is reachable from the site's navigation, and every relative link of the README and
the pages leads to a file (and heading) that exists in the checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import ROOT

PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def nav_pages(node) -> set[str]:
    """Every page file named in mkdocs.yml's ``nav`` (nested sections included)."""
    if isinstance(node, str):
        return {node}
    if isinstance(node, dict):
        return set().union(*(nav_pages(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(nav_pages(v) for v in node)) if node else set()
    return set()


def config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) and GitHub give a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text).strip("-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks are not links
    return [a or b for a, b in LINK.findall(text)]


def test_every_page_is_in_the_navigation():
    named = nav_pages(config()["nav"])
    orphans = [p.name for p in PAGES if p.name not in named]
    missing = [n for n in named if not (ROOT / "docs" / n).is_file()]
    assert not orphans, f"pages not reachable from mkdocs.yml's nav: {orphans}"
    assert not missing, f"nav names pages that do not exist: {missing}"


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *PAGES], ids=str)
def test_every_relative_link_resolves(page):
    bad = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            bad.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_the_site_builds_strictly(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    done = _build(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def _build(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(where / "site")],
        cwd=where,
        capture_output=True,
        text=True,
    )


def test_the_strict_build_fails_on_an_orphan_page_and_a_broken_anchor(tmp_path):
    """The site's own checks are on: a page outside ``nav`` fails the build, as does a link to a
    heading that does not exist (on a copy of the docs)."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")
    done = _build(tmp_path)
    assert done.returncode != 0 and "orphan.md" in done.stderr, done.stderr[-2000:]
    (tmp_path / "docs" / "orphan.md").unlink()
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\n[broken](getting-started.md#no-such-heading)\n")
    done = _build(tmp_path)
    assert done.returncode != 0 and "no-such-heading" in done.stderr, done.stderr[-2000:]
