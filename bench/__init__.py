"""attribution-bench: batched, protocol-exact benchmarking of attribution methods."""

from bench.core.paths import ROOT

__version__ = "0.1.0"

__all__ = ["ROOT", "__version__"]
