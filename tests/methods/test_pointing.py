"""On the embedded benchmark, Grad-CAM, gradient and IG must point better than chance."""

from __future__ import annotations

import pytest
import torch

from bench import ROOT
from bench.core.batch import collate
from bench.data.shapes import ShapesDataset
from bench.metrics.localisation import PointingGame
from bench.models import load_shapes_cnn
from tests.methods.conftest import make_method

CKPT = ROOT / "results" / "reference" / "models" / "shapes_cnn.pt"


@pytest.mark.slow
@pytest.mark.skipif(not CKPT.is_file(), reason="committed checkpoint missing")
def test_methods_beat_random_on_the_pointing_game():
    model = load_shapes_cnn(str(CKPT))
    data = ShapesDataset("test", size=48)
    batch = collate([data[i] for i in range(len(data))])
    metric = PointingGame(tolerance=7.5)
    scores = {}
    for name in ("random", "gradcam", "gradient", "integrated_gradients"):
        method = make_method(name, "shapes_cnn", fast=False)
        method.check(model)
        maps = torch.cat(
            [
                method(model, batch.images[i : i + 16], batch.targets[i : i + 16])
                for i in range(0, len(data), 16)
            ]
        )
        scores[name] = metric.compute(None, batch, maps).scores[""].nanmean().item()
    print("pointing game:", scores)
    for name in ("gradcam", "gradient", "integrated_gradients"):
        assert scores[name] > scores["random"], scores
