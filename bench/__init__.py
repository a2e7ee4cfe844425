"""attribution-bench: batched, protocol-exact benchmarking of attribution methods."""

from bench.core.paths import ROOT
from bench.core.resolvers import register_resolvers

__version__ = "0.1.0"

__all__ = ["ROOT", "__version__"]

register_resolvers()  # in every process that imports bench, a launcher's workers included
