"""``python scripts/bench_speed`` (this folder), ``python -m bench_speed`` from scripts/, or
``python scripts/bench_speed.py`` (the launcher beside this folder)."""

import sys
from pathlib import Path

if __package__:
    from .cli import main
else:  # run as a folder: its parent (scripts/) holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench_speed.cli import main

if __name__ == "__main__":
    main()
