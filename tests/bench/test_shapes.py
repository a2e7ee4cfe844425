"""The embedded benchmark's generator and its committed model."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from bench.core.batch import collate
from bench.core.errors import ConfigError
from bench.data.shapes import CLASSES, ShapesDataset, render
from bench.data.synthetic import mask_box
from bench.models import load_shapes_cnn, meta_of
from tests.conftest import SHAPES_CKPT


def test_render_is_deterministic_and_seed_dependent():
    a = render(0, "test", 5)
    b = render(0, "test", 5)
    c = render(1, "test", 5)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(render(0, "train", 5)[0], a[0])  # splits differ


def test_masks_and_boxes_are_inside_the_image_and_small():
    ds = ShapesDataset("val", size=60)
    for i in range(len(ds)):
        s = ds[i]
        h, w = s.image.shape[-2:]
        assert s.mask.shape == (h, w) and s.mask.any()
        x0, y0, x1, y1 = s.boxes[0].tolist()
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert s.mask.float().mean() < 0.25  # objects cover well under a quarter
        assert (x1 - x0) * (y1 - y0) / (h * w) < 0.25
        # the box is exactly the mask's bounding box
        assert torch.equal(s.boxes[0], torch.from_numpy(mask_box(s.mask.numpy())))


def test_class_balance():
    labels = [render(0, "train", i)[1] for i in range(800)]
    counts = Counter(labels)
    assert set(counts) == set(range(len(CLASSES))) and len(CLASSES) >= 6
    assert min(counts.values()) > 0.6 * 800 / len(CLASSES)


def test_ids_are_stable_and_unique():
    ds = ShapesDataset("test", size=20)
    ids = [ds[i].id for i in range(20)]
    assert len(set(ids)) == 20 and ids == [ShapesDataset("test", size=20)[i].id for i in range(20)]


def test_collate_batches_samples():
    ds = ShapesDataset("test", size=3)
    batch = collate([ds[i] for i in range(3)])
    assert batch.images.shape == (3, 3, 112, 112) and batch.targets.dtype == torch.long
    assert batch.fields == {"boxes", "masks"} and batch.orig_sizes.tolist() == [[112, 112]] * 3


def test_bad_split_and_size_are_rejected():
    with pytest.raises(ConfigError, match="split=tst.*test"):
        ShapesDataset("tst")
    with pytest.raises(ConfigError, match="image_size=64"):
        ShapesDataset("test", image_size=64)


def test_committed_model_loads_with_metadata_and_is_accurate():
    model = load_shapes_cnn(str(SHAPES_CKPT))
    meta = meta_of(model)
    assert meta.cam_layer == "features.3" and meta.num_classes == 8 and not model.training
    record = json.loads(SHAPES_CKPT.with_suffix(".json").read_text())
    assert record["test_accuracy"] >= 0.95 and "train_shapes.py" in record["command"]
    ds = ShapesDataset("test", size=64)
    batch = collate([ds[i] for i in range(64)])
    with torch.no_grad():
        acc = (model(batch.images).argmax(1) == batch.targets).float().mean().item()
    assert acc >= 0.9


def test_missing_checkpoint_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="nope.pt.*make train"):
        load_shapes_cnn(str(tmp_path / "nope.pt"))


def test_mismatched_checkpoint_is_a_config_error():
    with pytest.raises(ConfigError, match="does not fit"):
        load_shapes_cnn(str(SHAPES_CKPT), width=8)
