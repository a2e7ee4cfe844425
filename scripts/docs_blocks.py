"""The docs' numbers, re-written from the committed results: ``python scripts/docs_blocks.py``
(``make docs-numbers``); ``--check`` only compares. It runs the package beside this file
(scripts/docs_blocks/, its ``__main__.py``)."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_suffix("")), run_name="__main__")
