"""Subsetting and sharding: first N, seeded random N, explicit ids, shards that cover everything once."""

from __future__ import annotations

import pytest
import torch

from bench.core.batch import Sample
from bench.core.errors import ConfigError
from bench.data.base import ImageDataset
from bench.data.subset import select


class Toy(ImageDataset):
    name = "toy"

    def __init__(self, n: int, pairs: bool = False) -> None:
        self.n = n
        self.pairs = pairs

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        sid = f"img{i // 2}:c{i % 2}" if self.pairs else f"img{i}"
        return Sample(image=torch.zeros(3, 2, 2), target=0, id=sid)


def ids(sel):
    return [sel[i].id for i in range(len(sel))]


@pytest.mark.parametrize("n", [0, 1, 7, 10, 23])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_shards_cover_every_item_exactly_once(n, k):
    ds = Toy(n)
    seen = []
    for shard in range(k):
        seen += ids(select(ds, shard=shard, num_shards=k))
    assert sorted(seen) == sorted(ids(select(ds))) and len(seen) == n


def test_shards_of_a_sample_cover_the_sample():
    ds = Toy(30)
    whole = ids(select(ds, sample=11, seed=3))
    parts = [x for s in range(3) for x in ids(select(ds, sample=11, seed=3, shard=s, num_shards=3))]
    assert sorted(parts) == sorted(whole) and len(set(parts)) == 11


def test_limit_sample_ids():
    ds = Toy(20)
    assert ids(select(ds, limit=3)) == ["img0", "img1", "img2"]
    assert len(select(ds, limit=100)) == 20
    a, b, c = (ids(select(ds, sample=5, seed=s)) for s in (0, 0, 1))
    assert a == b and a != c and len(set(a)) == 5
    assert ids(select(ds, ids=["img7", "img2"])) == ["img7", "img2"]


def test_ids_from_file_and_image_ids_select_pairs(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("img1\n\nimg0:c0\n")
    assert ids(select(Toy(6, pairs=True), ids=str(f))) == ["img1:c0", "img1:c1", "img0:c0"]


def test_errors():
    ds = Toy(5)
    with pytest.raises(ConfigError, match="not in dataset=toy"):
        select(ds, ids=["nope"])
    with pytest.raises(ConfigError, match="shard"):
        select(ds, shard=2, num_shards=2)
    with pytest.raises(ConfigError, match="sample"):
        select(ds, sample=9)
    with pytest.raises(ConfigError, match="limit"):
        select(ds, limit=0)
