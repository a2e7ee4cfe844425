"""The import rule of the layered core (DESIGN.md, Layout), checked on every import statement.

``bench.core`` imports nothing of ours; methods and metrics import only the core (and their own
package); datasets and model loaders likewise; the runner (every other ``bench`` module) may
import anything. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from bench import ROOT

#: The folders of our code; methods/ and metrics/ are the packages bench.methods, bench.metrics.
FOLDERS = ("bench", "methods", "metrics")

#: The layers, each importing only from the layers before it and itself (DESIGN.md, Layout):
#: core <- {data, models, methods, metrics} <- config <- engine <- results <- api <- cli.
BASES = ("data", "models", "methods", "metrics")
ALLOWED = {
    "core": {"core"},
    **{b: {"core", b} for b in BASES},
    "config": {"core", *BASES, "config"},
    "engine": {"core", *BASES, "config", "engine"},
    "results": {"core", *BASES, "config", "engine", "results"},
    "api": {"core", *BASES, "config", "engine", "results", "api"},
    "cli": {"core", *BASES, "config", "engine", "results", "api", "cli"},
}


def layer(module: str) -> str | None:
    """The layer of a module of ours (None for a third-party module)."""
    parts = module.split(".")
    if parts[0] != "bench":
        return None
    if module == "bench" or parts[1] == "core":
        return "core"  # the package root only re-exports the core's ROOT
    if parts[1] == "__main__":
        return "cli"
    if parts[1] in ALLOWED:
        return parts[1]
    raise AssertionError(f"{module} is in no layer: put it in a sub-package of bench/")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] in ("methods", "metrics"):
        parts = ["bench", *parts]
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is one of our modules or packages (not a class or function in one)."""
    parts = name.split(".")
    if parts[0] != "bench":
        return False
    if parts[:2] in (["bench", "methods"], ["bench", "metrics"]):
        parts = parts[1:]
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or path.is_dir()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # ``from bench import core`` / ``from bench.models import torchvision``: submodules count
            out += [
                (node.lineno, f"{mod}.{a.name}") for a in node.names if is_module(f"{mod}.{a.name}")
            ]
    return out


def violations(edges: dict[str, list[tuple[int, str]]]) -> list[str]:
    """``module:line imports target (layer -> layer)`` for every edge the rule forbids."""
    bad = []
    for source, targets in edges.items():
        src = layer(source)
        for line, target in targets:
            dst = layer(target) if is_module(target) or target == "bench" else None
            if dst is not None and dst not in ALLOWED[src]:
                bad.append(f"{source}:{line} imports {target} ({src} -> {dst})")
    return bad


def project_edges() -> dict[str, list[tuple[int, str]]]:
    return {
        module_name(p): imports_of(p) for pkg in FOLDERS for p in sorted((ROOT / pkg).rglob("*.py"))
    }


def test_no_import_breaks_the_layering():
    edges = project_edges()
    assert (
        len(edges) > 40 and "bench.core.context" in edges and "bench.metrics.randomisation" in edges
    )
    assert violations(edges) == []


def test_the_checker_sees_each_kind_of_forbidden_edge():
    forged = {
        "bench.methods.cam": [(3, "bench.metrics.base")],  # methods -> metrics
        "bench.metrics.road": [
            (4, "bench.methods.base"),
            (5, "bench.models"),
        ],  # metrics -> methods, models
        "bench.core.context": [(6, "bench.data.base")],  # core -> data
        "bench.data.voc": [(7, "bench.models.meta")],  # data -> models
        "bench.models.meta": [(8, "bench.engine.run")],  # models -> engine
        "bench.config.trust": [(9, "bench.engine.cache")],  # config -> engine
        "bench.engine.run": [(10, "bench.results.collate"), (11, "bench.metrics.base")],
        "bench.results.figures": [(12, "bench.api"), (13, "bench.engine.io")],
        "bench.api": [(14, "bench.cli.job"), (15, "torch")],
    }
    bad = violations(forged)
    assert len(bad) == 10, bad
    assert not any(v.startswith(("bench.engine.run:11 ", "bench.results.figures:13 ")) for v in bad)


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (lazily or not), all layers together."""
    return {
        m: {t for _, t in targets if is_module(t) and t != m}
        for m, targets in project_edges().items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_sees_a_cycle_closed_inside_a_function():
    graph = {"bench.api": {"bench.cli"}, "bench.cli": {"bench.engine.evaluate"},
             "bench.engine.evaluate": {"bench.api"}, "bench.core.errors": set()}  # fmt: skip
    assert cycles(graph) == [["bench.api", "bench.cli", "bench.engine.evaluate"]]


def test_core_depends_on_no_other_layer_even_lazily():
    core = {m: e for m, e in project_edges().items() if layer(m) == "core"}
    ours = {t for edges in core.values() for _, t in edges if layer(t)}
    assert ours and all(layer(t) == "core" for t in ours), sorted(ours)


def test_no_module_imports_back_what_imports_it_even_lazily():
    """Imports flow one way within a layer too (DESIGN.md): no import cycle between our modules,
    counting imports inside functions (the one that lazily closed perturbation <-> surrogate)."""
    assert cycles(module_graph()) == []
