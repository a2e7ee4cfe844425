"""Superpixels made in the DataLoader's workers (issue 14, item 4): the same maps and scores as the
method's own SLIC, and the main process no longer runs SLIC when there are workers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import bench.methods.superpixel as superpixel
from bench.api import compose
from bench.core.batch import collate_with
from bench.data.shapes import ShapesDataset
from bench.engine.run import run
from bench.methods.superpixel import BatchedLime

FAST = [
    "model=shapes_cnn",
    "dataset.limit=4",
    "batch_size=2",
    "method=lime_batched",
    "method.n_samples=40",
    "method.n_segments=12",
    "metric=[deletion,pointing_game]",
    "metric.deletion.step=1792",
    "cache=off",
]


def _scores(tmp_path, name: str, *overrides: str) -> pd.Series:
    record = run(compose(*FAST, *overrides), tmp_path / name)
    assert record["status"] == "completed", record.get("error")
    df = pd.read_csv(tmp_path / name / "scores.csv", dtype={"image_id": str})
    return df.set_index(["image_id", "metric"])["value"].sort_index()


@pytest.mark.slow
def test_workers_make_the_superpixels_and_nothing_changes(tmp_path, monkeypatch):
    calls = []
    original = superpixel.superpixels

    def counted(images, *args, **kwargs):
        calls.append(len(images))
        return original(images, *args, **kwargs)

    monkeypatch.setattr(superpixel, "superpixels", counted)
    alone = _scores(tmp_path, "alone", "num_workers=0")
    assert sum(calls) == 4  # the method's own SLIC, once per image
    calls.clear()
    workers = _scores(tmp_path, "workers", "num_workers=1")
    assert calls == []  # made in the worker process, not here
    pd.testing.assert_series_equal(workers, alone, rtol=0, atol=0)


def test_given_inputs_are_used_only_for_the_very_images_they_were_made_for():
    method = BatchedLime(n_samples=20, n_segments=6)
    images = torch.stack([ShapesDataset(split="test", size=2)[i].image for i in range(2)])
    prepared = method.loader_inputs()(images)
    seg = prepared["segments"]
    assert seg.shape == (2, *images.shape[-2:]) and seg.dtype == torch.long
    assert torch.equal(seg, superpixel.superpixels(images, 6, 10.0, 0.0))
    marked = torch.full_like(seg, 7)  # not what SLIC makes: shows which was used
    with method.given(images, {"segments": marked}):
        assert torch.equal(method.segments(images), marked)
        assert torch.equal(method.segments(images[:1]), seg[:1])  # a subset: its own SLIC
        assert torch.equal(method.segments(images.clone()), seg)
    assert torch.equal(method.segments(images), seg)  # outside the block: its own
    samples = [ShapesDataset(split="test", size=2)[i] for i in range(2)]
    batch = collate_with(method.loader_inputs(), samples)
    assert torch.equal(batch.extras["segments"], seg)
    assert torch.equal(batch.to("cpu").extras["segments"], seg)
