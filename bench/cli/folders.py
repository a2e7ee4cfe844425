"""What the commands that read job and sweep folders share (``bench-collate``, ``bench-figures``,
``bench-report``): the start of their parser, and the checks of its arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def folder_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser for ``prog`` whose positional arguments are job or sweep folders."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("folders", nargs="+", help="sweep or job folders (searched recursively)")
    return p


def folders_exist(prog: str, folders: Sequence[str]) -> bool:
    """Whether every folder argument of a command exists; else one line on stderr naming it."""
    missing = [f for f in folders if not Path(f).is_dir()]
    if missing:
        print(
            f"{prog}: {missing[0]} is not a folder; accepted: sweep or job folders.",
            file=sys.stderr,
        )
    return not missing


def parse_folder_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, images_minimum: int | None = None
) -> argparse.Namespace | None:
    """``argv`` parsed by ``parser`` (of :func:`folder_parser`), or None when a folder does not
    exist or ``--images`` is below ``images_minimum``: one line on stderr names the bad value."""
    args = parser.parse_args(argv)
    if not folders_exist(parser.prog, args.folders):
        return None
    if images_minimum is not None and args.images < images_minimum:
        print(
            f"{parser.prog}: --images={args.images}; accepted: >= {images_minimum}.",
            file=sys.stderr,
        )
        return None
    return args
