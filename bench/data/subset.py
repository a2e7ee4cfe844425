"""Subsetting and sharding: which items of a dataset one job scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from bench.core.errors import ConfigError, check_int
from bench.data.base import ImageDataset

#: Keys of the ``dataset`` config node that select items rather than configure the loader.
SUBSET_KEYS = ("limit", "sample", "ids", "shard", "num_shards")


class Selection(Dataset):
    """The items ``indices`` of ``base``, keeping the base dataset's metadata attributes."""

    def __init__(self, base: ImageDataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]

    def __getattr__(self, name: str):
        if name in ("base", "indices"):
            raise AttributeError(name)
        return getattr(self.base, name)


def _read_ids(ids: str | Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        path = Path(ids)
        if not path.is_file():
            raise ConfigError(
                f"dataset.ids={ids} is not a file; accepted: a list of ids or a file of ids, one a line."
            )
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [str(i) for i in ids]


def all_ids(dataset: ImageDataset) -> list[str]:
    """Every item's id in order: the dataset's ``sample_ids`` when it has them (no image is
    opened), else by loading each item."""
    ids = getattr(dataset, "sample_ids", None)
    if ids is not None:
        return list(ids)
    return [dataset[i].id for i in range(len(dataset))]


def _indices_of(dataset: ImageDataset, wanted: list[str]) -> list[int]:
    """Indices of ``wanted`` ids in the order given; an image id (without ``:<class>``) selects
    all of that image's pairs in a multi-label set."""
    index_of = dataset.index_of_ids(wanted) if hasattr(dataset, "index_of_ids") else None
    if index_of is not None:
        return list(index_of)
    lookup: dict[str, list[int]] = {}
    for i, sid in enumerate(all_ids(dataset)):
        lookup.setdefault(sid, []).append(i)
        if ":" in sid:
            lookup.setdefault(sid.rsplit(":", 1)[0], []).append(i)
    missing = [i for i in wanted if i not in lookup]
    if missing:
        raise ConfigError(
            f"dataset.ids: {len(missing)} id(s) not in dataset={dataset.name}, e.g. {missing[:3]}."
        )
    out: list[int] = []
    seen: set[int] = set()
    for i in wanted:
        for j in lookup[i]:
            if j not in seen:
                seen.add(j)
                out.append(j)
    return out


def select(
    dataset: ImageDataset,
    limit: int | None = None,
    sample: int | None = None,
    ids: str | Sequence[str] | None = None,
    shard: int = 0,
    num_shards: int = 1,
    seed: int = 0,
) -> Selection:
    """Pick items: an explicit id list, else a seeded random ``sample``, else the first ``limit``;
    then shard ``shard`` of ``num_shards`` (round robin, so every item lands in exactly one shard).

    Ids are exact sample ids, or image ids that select every ``<image id>:<class>`` pair of the
    image in a multi-label set; the selection keeps the order given, without duplicates."""
    num_shards = check_int("dataset.num_shards", num_shards, minimum=1)
    shard = check_int("dataset.shard", shard, minimum=0)
    if shard >= num_shards:
        raise ConfigError(
            f"dataset.shard={shard} dataset.num_shards={num_shards} is not valid; accepted: "
            "num_shards >= 1 and 0 <= shard < num_shards."
        )
    n = len(dataset)
    indices = list(range(n))
    if ids is not None:
        indices = _indices_of(dataset, _read_ids(ids))
    elif sample is not None:
        sample = check_int("dataset.sample", sample, minimum=1, maximum=n)
        gen = torch.Generator().manual_seed(seed)
        indices = sorted(torch.randperm(n, generator=gen)[:sample].tolist())
    elif limit is not None:
        limit = check_int("dataset.limit", limit, minimum=1)
        indices = indices[: min(limit, n)]
    return Selection(dataset, indices[shard::num_shards])
