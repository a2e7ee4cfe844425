"""The digits benchmark: real handwriting, disjoint splits, exact boxes and masks, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import ConfigError
from bench.data.digits import DigitsDataset, _digits, render, split_indices


def test_splits_are_disjoint_and_cover_all_digits():
    s = split_indices()
    sets = [set(s[k].tolist()) for k in ("train", "val", "test")]
    assert [len(x) for x in sets] == [1197, 200, 400]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(range(1797))


def test_sample_is_the_real_digit_with_its_box_and_mask():
    ds = DigitsDataset("test")
    images, labels = _digits()
    s = ds[5]
    digit = int(ds.digits[5])
    assert s.target == labels[digit] and s.image.shape == (3, 112, 112)
    assert s.id == f"digits-0-test-{digit:04d}-0" and s.id == ds.sample_ids[5]
    m = s.mask
    rows, cols = torch.nonzero(m, as_tuple=True)
    assert s.boxes.tolist() == [
        [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1]
    ]
    img, _, _ = ds.raw(5)
    ink = img.astype(float).mean(2)
    assert ink[m.numpy()].mean() < ink[~m.numpy()].mean()  # dark ink inside the mask


def test_deterministic_and_seeded():
    a, la, ma = render(0, "test", 3, 0)
    b, lb, mb = render(0, "test", 3, 0)
    c, _, _ = render(1, "test", 3, 0)
    assert np.array_equal(a, b) and la == lb and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)


def test_renders_and_errors():
    assert len(DigitsDataset("train")) == 4 * 1197 and len(DigitsDataset("val", renders=2)) == 400
    with pytest.raises(ConfigError, match="split"):
        DigitsDataset("dev")
    with pytest.raises(ConfigError, match="image_size=64 .*>= 96"):
        DigitsDataset(image_size=64)
