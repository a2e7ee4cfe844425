"""The speed benchmark's documented command, ``python scripts/bench_speed.py --quick --threads 1``:
it runs the package beside this file (scripts/bench_speed/, its ``__main__.py``)."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_suffix("")), run_name="__main__")
