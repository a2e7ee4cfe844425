"""``python scripts/docs_blocks`` (this folder), or ``python scripts/docs_blocks.py`` (the
launcher beside this folder)."""

import sys
from pathlib import Path

if __package__:
    from .cli import main
else:  # run as a folder: its parent (scripts/) holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from docs_blocks.cli import main

if __name__ == "__main__":
    sys.exit(main())
