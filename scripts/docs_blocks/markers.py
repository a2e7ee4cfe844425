"""Blocks of generated Markdown: found by their markers in any doc of the checkout, replaced
whole, compared.

A block is the lines between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` (each marker
alone on its line; NAME in lower case, digits, ``-`` and ``_``). A block may sit in any Markdown
file :func:`doc_files` lists, and move between them: it is found by its name, which is unique
across the docs.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

START = re.compile(r"^<!-- generated: ([a-z0-9_-]+) -->$")
END = re.compile(r"^<!-- end: ([a-z0-9_-]+) -->$")
#: Prose lines of a block are wrapped at this width (tables, code and long words are not).
WIDTH = 100
#: The docs searched for blocks, relative to the checkout (``**`` globs recursively).
DOC_GLOBS = ("README.md", "CHANGELOG.md", "CONTRIBUTING.md", "docs/**/*.md", "results/README.md")


class BlockError(ValueError):
    """A marker without its partner, a nested or repeated block, an unknown name: one line."""


@dataclass(frozen=True)
class Block:
    """One block: its file, name, the line indices of its two markers and the text between."""

    path: Path
    name: str
    start: int
    end: int
    text: str


def doc_files(root: Path) -> list[Path]:
    """Every Markdown file of :data:`DOC_GLOBS` under ``root`` that exists, sorted."""
    found = {p for pattern in DOC_GLOBS for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


def find_blocks(path: Path, root: Path | None = None) -> list[Block]:
    """The blocks of one file, in order; :class:`BlockError` on unbalanced markers."""
    shown = path.relative_to(root) if root else path
    lines = path.read_text().split("\n")
    blocks: list[Block] = []
    open_name, open_line = None, -1
    for i, line in enumerate(lines):
        start, end = START.match(line), END.match(line)
        if start:
            if open_name is not None:
                raise BlockError(
                    f"{shown}:{i + 1}: block {start.group(1)} starts inside block {open_name} "
                    f"(line {open_line + 1}); accepted: one block at a time."
                )
            open_name, open_line = start.group(1), i
        elif end:
            if end.group(1) != open_name:
                raise BlockError(
                    f"{shown}:{i + 1}: <!-- end: {end.group(1)} --> closes "
                    f"{open_name or 'no block'}; accepted: <!-- end: {open_name} -->."
                )
            text = "\n".join(lines[open_line + 1 : i])
            blocks.append(Block(path, open_name, open_line, i, text))
            open_name = None
    if open_name is not None:
        raise BlockError(f"{shown}:{open_line + 1}: block {open_name} has no end marker.")
    return blocks


def all_blocks(root: Path) -> dict[str, Block]:
    """Every block of the docs by name; :class:`BlockError` when a name occurs twice."""
    out: dict[str, Block] = {}
    for path in doc_files(root):
        for block in find_blocks(path, root):
            if block.name in out:
                first = out[block.name].path.relative_to(root)
                raise BlockError(
                    f"{path.relative_to(root)}:{block.start + 1}: block {block.name} is also in "
                    f"{first}; accepted: each name once across the docs."
                )
            out[block.name] = block
    return out


def replace_blocks(path: Path, texts: dict[str, str]) -> str:
    """The file's text with each of its blocks named in ``texts`` replaced by that text."""
    lines = path.read_text().split("\n")
    for block in reversed(find_blocks(path)):
        if block.name in texts:
            lines[block.start + 1 : block.end] = texts[block.name].split("\n")
    return "\n".join(lines)


def wrap(text: str, width: int = WIDTH) -> str:
    """``text`` with its prose paragraphs and list items wrapped at ``width`` (as the docs are);
    tables, fenced code and HTML comments are left as they are."""
    out: list[str] = []
    fenced = False
    for para in text.split("\n\n"):
        lines = para.split("\n")
        if para.startswith("```") or fenced:
            fenced = fenced != (para.count("```") % 2 == 1)
            out.append(para)
        elif any(line.startswith(("|", "<!--", "    ")) for line in lines):
            out.append(para)
        elif para.startswith("- "):
            items = re.split(r"\n(?=- )", para)
            out.append(
                "\n".join(
                    textwrap.fill(
                        " ".join(i.split()),
                        width,
                        subsequent_indent="  ",
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                    for i in items
                )
            )
        else:
            out.append(
                textwrap.fill(
                    " ".join(para.split()), width, break_long_words=False, break_on_hyphens=False
                )
            )
    return "\n\n".join(out)
