"""The Python API: the same configs the ``bench`` command composes, from a script or a notebook.

from bench.api import compose, evaluate
cfg = compose("method=gradcam", "metric=[deletion]")   # the resolved job config
df = evaluate(model, images, labels, methods=["gradcam"], metrics=["deletion"])  # long rows
"""

from __future__ import annotations

from bench.config.compose import compose


def evaluate(*args, **kwargs):
    """Score a model's maps or methods from Python: :func:`bench.engine.evaluate.evaluate`."""
    from bench.engine.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["compose", "evaluate"]
