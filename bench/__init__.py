"""attribution-bench: batched, protocol-exact benchmarking of attribution methods."""

from pathlib import Path

# methods/ and metrics/ are the subpackages bench.methods and bench.metrics: the wheel installs them
# there (pyproject.toml's package-dir), so a user's own methods.py or metrics.py cannot shadow them.
# In a checkout they sit beside bench/; the package's search path finds them there.
_SIBLINGS = Path(__file__).resolve().parents[1]
if (_SIBLINGS / "methods" / "__init__.py").is_file() and not (
    Path(__file__).parent / "methods"
).exists():
    __path__.append(str(_SIBLINGS))  # noqa: F821 - a package's __path__

from bench.core.paths import ROOT  # noqa: E402
from bench.core.resolvers import register_resolvers  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ROOT", "__version__"]

register_resolvers()  # in every process that imports bench, a launcher's workers included
