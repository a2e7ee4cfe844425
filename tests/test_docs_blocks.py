"""Every table, figure and finding the docs quote from results/ is written by
``scripts/docs_blocks.py`` (``make docs-numbers``) from the committed files: a block that differs
from what it writes fails here. Every committed results folder says how it was made
(``MANIFEST.json``: command, commit, machine, load)."""

from __future__ import annotations

import fnmatch
import json

import pandas as pd
import pytest

from bench import ROOT
from bench.api import compose
from tests._docs_blocks import submodule

cli = submodule("cli")
markers = submodule("markers")
registry = submodule("registry")
sources = submodule("sources")


def test_every_block_is_what_the_committed_results_give():
    diffs = cli.differences(ROOT)
    assert not diffs, "\n\n".join(diffs) + "\n\nRun `make docs-numbers` and commit the docs."


def test_the_docs_have_every_registered_block_once():
    found = markers.all_blocks(ROOT)
    assert set(found) == set(registry.BLOCKS)


def _doc(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_block_is_found_by_name_in_any_doc_and_rewritten_there(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "BLOCKS", {"x": lambda src: sources.Rendered("new\ntext\n\n| t |")})
    _doc(tmp_path, "README.md", "# t\n\nno blocks here\n")
    page = _doc(tmp_path, "docs/page.md", "a\n<!-- generated: x -->\nold\n<!-- end: x -->\nb\n")
    assert cli.main(["--check", "--root", str(tmp_path)]) == 1
    assert cli.main(["--root", str(tmp_path)]) == 0
    # prose wrapped as the docs are (at 100 characters), tables kept
    assert page.read_text() == "a\n<!-- generated: x -->\nnew text\n\n| t |\n<!-- end: x -->\nb\n"
    assert cli.main(["--check", "--root", str(tmp_path)]) == 0


@pytest.mark.parametrize(
    "files, message",
    [
        ({"README.md": "<!-- generated: a -->\n"}, "block a has no end marker"),
        ({"README.md": "<!-- generated: a -->\n<!-- end: b -->\n"}, "closes a"),
        ({"README.md": "<!-- end: a -->\n"}, "closes no block"),
        (
            {"README.md": "<!-- generated: a -->\n<!-- generated: b -->\n"},
            "starts inside block a",
        ),
        (
            {
                "README.md": "<!-- generated: a -->\n<!-- end: a -->\n",
                "docs/p.md": "<!-- generated: a -->\n<!-- end: a -->\n",
            },
            "also in",
        ),
    ],
)
def test_broken_markers_are_one_line_errors(tmp_path, files, message):
    for relative, text in files.items():
        _doc(tmp_path, relative, text)
    with pytest.raises(markers.BlockError, match=message):
        markers.all_blocks(tmp_path)


def test_an_unregistered_block_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "BLOCKS", {})
    _doc(tmp_path, "README.md", "<!-- generated: stray -->\nx\n<!-- end: stray -->\n")
    assert any("stray is not registered" in d for d in cli.differences(tmp_path))


#: Folders of results/ that are committed and what reads them.
FOLDERS = sorted(
    [ROOT / "results" / "reference", ROOT / "results" / "perf"]
    + [p for p in (ROOT / "results" / "reference").iterdir() if p.is_dir()]
)
REQUIRED = ("command", "commit", "machine", "load", "date")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_results_folder_says_how_it_was_made(folder):
    doc = json.loads((folder / "MANIFEST.json").read_text())
    assert doc.get("what") and doc.get("runs"), "a manifest says what the folder holds and runs"
    for run in doc["runs"]:
        lacking = [k for k in REQUIRED if not run.get(k)]
        assert not lacking, f"a run lacks {lacking} (write 'unrecorded' where it is): {run}"
        assert isinstance(run["command"], list) and all(isinstance(c, str) for c in run["command"])
    patterns = [p for run in doc["runs"] for p in run["files"]]
    files = [p.name for p in folder.iterdir() if p.is_file() and p.name != "MANIFEST.json"]
    orphans = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not orphans, f"files no run of {folder.name}/MANIFEST.json made: {orphans}"


@pytest.mark.parametrize(
    "preset, folder",
    [
        ("default", "default_benchmark"),
        ("catalogue", "catalogue"),
        ("catalogue_heavy", "catalogue_heavy"),
        ("catalogue_sanity", "catalogue_sanity"),
    ],
)
def test_a_preset_makes_as_many_images_as_its_committed_table(preset, folder):
    """``bench experiment=<preset>`` scores the images its reference folder's table has."""
    cfg = compose(f"experiment={preset}", resolve=False)
    summary = pd.read_csv(ROOT / "results" / "reference" / folder / "summary.csv")
    assert cfg.dataset.limit == summary["n"].max()
