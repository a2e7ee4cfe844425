"""The Python API: the same configs the ``bench`` command composes, from a script or a notebook.

from bench.api import compose, evaluate, report
cfg = compose("method=gradcam", "metric=[deletion]")   # the resolved job config
df = evaluate(model, images, labels, methods=["gradcam"], metrics=["deletion"])  # long rows
path = report(["results/sweeps/A"], out="report.html")  # one self-contained HTML page
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.config.compose import compose


def evaluate(*args, **kwargs):
    """Score a model's maps or methods from Python: :func:`bench.engine.evaluate.evaluate`."""
    from bench.engine.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def report(
    folders: Sequence[str | Path],
    out: str | Path | None = None,
    n_images: int = 4,
    from_cache: bool = True,
    title: str | None = None,
) -> Path:
    """Write the HTML report of the job and sweep folders ``folders`` (default
    ``<first folder>/report.html``) and return its path: :mod:`bench.results.report`."""
    from bench.results.report import write_report

    return write_report(folders, out, n_images, from_cache, title).path


__all__ = ["compose", "evaluate", "report"]
