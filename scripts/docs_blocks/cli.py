"""``python scripts/docs_blocks.py [--check] [--list] [--root DIR] [NAME ...]``: rewrite (or
compare) the generated blocks of the docs from the committed results; exit 1 when ``--check``
finds a block that differs, 2 on a block or source that cannot be read or written."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import ROOT

from .markers import BlockError, all_blocks, replace_blocks, wrap
from .registry import BLOCKS
from .sources import Rendered, Sources


def render(root: Path, names: Sequence[str] | None = None) -> dict[str, Rendered]:
    """Every registered block (or those named) written from the files under ``root``."""
    src = Sources(root)
    chosen = list(names) if names else list(BLOCKS)
    unknown = [n for n in chosen if n not in BLOCKS]
    if unknown:
        raise BlockError(f"block {unknown[0]} is not registered; accepted: {', '.join(BLOCKS)}.")
    out = {}
    for name in chosen:
        rendered = BLOCKS[name](src)
        out[name] = Rendered(wrap(rendered.text), rendered.claims)
    return out


def differences(root: Path, names: Sequence[str] | None = None) -> list[str]:
    """One unified diff per block whose text in the docs differs from what :func:`render`
    writes, and one line per registered block missing from the docs or unknown block found."""
    found = all_blocks(root)
    out = [
        f"{b.path.relative_to(root)}:{b.start + 1}: block {n} is not registered in "
        "scripts/docs_blocks/registry.py"
        for n, b in found.items()
        if n not in BLOCKS and (not names or n in names)
    ]
    for name, rendered in render(root, names).items():
        if name not in found:
            out.append(f"block {name} is in no doc (README.md, docs/*.md, ...)")
            continue
        block = found[name]
        if block.text != rendered.text:
            where = f"{block.path.relative_to(root)} block {name}"
            out.append(
                "\n".join(
                    difflib.unified_diff(
                        block.text.split("\n"),
                        rendered.text.split("\n"),
                        f"{where} (in the doc)",
                        f"{where} (from the committed results)",
                        lineterm="",
                    )
                )
            )
    return out


def write(root: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Rewrite the blocks in place; the files that changed."""
    rendered = render(root, names)
    found = all_blocks(root)
    changed = []
    for path in sorted({b.path for n, b in found.items() if n in rendered}):
        text = replace_blocks(path, {n: r.text for n, r in rendered.items()})
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="blocks to write or check (default: all)")
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    p.add_argument("--list", action="store_true", help="list the blocks and where they are")
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this one)")
    args = p.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.list:
            found = all_blocks(root)
            for name in BLOCKS:
                b = found.get(name)
                print(f"{name}: {b.path.relative_to(root)}:{b.start + 1}" if b else f"{name}: -")
            return 0
        if args.check:
            diffs = differences(root, args.names)
            for d in diffs:
                print(d)
            return 1 if diffs else 0
        for path in write(root, args.names):
            print(f"rewrote {path.relative_to(root)}")
    except (BlockError, OSError, KeyError, ValueError) as err:
        print(f"docs_blocks: {err}", file=sys.stderr)
        return 2
    return 0
