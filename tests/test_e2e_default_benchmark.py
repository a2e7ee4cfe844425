"""The default benchmark's acceptance claims, on a small subset of the embedded test split."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import run_bench


@pytest.mark.slow
def test_gradcam_and_gradient_beat_random_on_the_embedded_benchmark(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_bench(
        [
            "-m",
            "method=gradient,gradcam,random",
            "dataset.limit=48",
            "batch_size=16",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    s = pd.read_csv(sweep / "summary.csv").set_index(["method", "metric"])["mean"]
    assert s["gradcam", "deletion"] < s["random", "deletion"]
    assert s["gradcam", "insertion"] > s["random", "insertion"]
    assert s["gradcam", "pointing_game"] > s["random", "pointing_game"]
    assert s["gradient", "pointing_game"] > s["random", "pointing_game"]
    rows = pd.read_csv(sweep / "scores_all.csv")
    assert len(rows) == 3 * 48 * 3  # one row per (image, method, metric)
