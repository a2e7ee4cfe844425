"""scripts/docs_blocks/ imported as the package ``docs_blocks`` (scripts/ is no package)."""

from __future__ import annotations

import importlib.util
import sys

from bench import ROOT

PACKAGE = ROOT / "scripts" / "docs_blocks"


def load():
    """The package (its submodules imported through it: ``docs_blocks.cli``, ...)."""
    if "docs_blocks" in sys.modules:
        return sys.modules["docs_blocks"]
    spec = importlib.util.spec_from_file_location(
        "docs_blocks", PACKAGE / "__init__.py", submodule_search_locations=[str(PACKAGE)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def submodule(name: str):
    load()
    return importlib.import_module(f"docs_blocks.{name}")
