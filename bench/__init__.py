"""attribution-bench: batched, protocol-exact benchmarking of attribution methods."""

from pathlib import Path

__version__ = "0.1.0"

#: The project root (the folder holding conf/, results/ and the committed reference files).
ROOT = Path(__file__).resolve().parent.parent
