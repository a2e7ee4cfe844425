"""Subsetting and sharding: which items of a dataset one job scores, and what becomes of bad files.

``dataset.on_bad_sample`` (``fail``, the default, or ``skip``): after the items are chosen and
sharded, a dataset with ``check_files`` (every file-backed one, :mod:`bench.data.files`) checks
the selected items' files, cheaply and before any compute. ``fail`` stops the job at the first bad
file with one line naming it; ``skip`` drops the bad items and lists them in
:attr:`Selection.skipped` (so a job may score fewer than ``limit`` items; shards stay disjoint).
A selection whose every item is bad fails under ``skip`` too: it would score nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from bench.core.errors import ConfigError, check_choice, check_int
from bench.data.base import ImageDataset

log = logging.getLogger("bench")

#: Keys of the ``dataset`` config node that select items rather than configure the loader.
SUBSET_KEYS = ("limit", "sample", "ids", "shard", "num_shards", "on_bad_sample")
#: Values of ``dataset.on_bad_sample``.
ON_BAD_SAMPLE = ("fail", "skip")


class Selection(Dataset):
    """The items ``indices`` of ``base``, keeping the base dataset's metadata attributes.

    ``skipped``: the items dropped as bad files (``dataset.on_bad_sample=skip``), each
    ``{"id", "path", "reason"}``; empty when none was (or the dataset has no file check)."""

    def __init__(
        self, base: ImageDataset, indices: Sequence[int], skipped: Sequence[dict] = ()
    ) -> None:
        self.base = base
        self.indices = list(indices)
        self.skipped: list[dict] = list(skipped)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]

    def __getattr__(self, name: str):
        if name in ("base", "indices", "skipped"):
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
    on_bad_sample: str = "fail",
) -> Selection:
    """Pick items: an explicit id list, else a seeded random ``sample``, else the first ``limit``;
    then shard ``shard`` of ``num_shards`` (round robin, so every item lands in exactly one shard);
    then check the chosen items' files when the dataset can (``check_files``): ``on_bad_sample``
    ``fail`` raises a ConfigError for the first bad one, ``skip`` drops them into
    :attr:`Selection.skipped`.

    Ids are exact sample ids, or image ids that select every ``<image id>:<class>`` pair of the
    image in a multi-label set; the selection keeps the order given, without duplicates."""
    check_choice("dataset.on_bad_sample", on_bad_sample, ON_BAD_SAMPLE)
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
    return _drop_bad(dataset, indices[shard::num_shards], on_bad_sample)


def _drop_bad(dataset: ImageDataset, indices: list[int], on_bad_sample: str) -> Selection:
    check = getattr(dataset, "check_files", None)
    bad = check(indices) if callable(check) and indices else []
    if not bad:
        return Selection(dataset, indices)
    records = getattr(dataset, "records", None)
    ids = getattr(dataset, "sample_ids", None)
    skipped = [
        {
            "id": str(ids[i]) if ids is not None else str(i),
            "path": str(records[i]["path"]) if records is not None else "",
            "reason": reason,
        }
        for i, reason in bad
    ]
    first = skipped[0]
    where = first["path"] or f"dataset={dataset.name} item {first['id']}"
    if on_bad_sample == "fail":
        more = f" ({len(bad) - 1} more bad of the {len(indices)} selected)" if len(bad) > 1 else ""
        raise ConfigError(
            f"{where}: {first['reason']}{more}; set dataset.on_bad_sample=skip to score the "
            "other images."
        )
    if len(bad) == len(indices):
        raise ConfigError(
            f"dataset.on_bad_sample=skip skipped all {len(indices)} selected items of "
            f"dataset={dataset.name}, nothing is left to score; the first: {where}: "
            f"{first['reason']}."
        )
    log.warning(
        "dataset.on_bad_sample=skip: skipped %d of the %d selected items, e.g. %s: %s",
        len(bad),
        len(indices),
        where,
        first["reason"],
    )
    dropped = {i for i, _ in bad}
    return Selection(dataset, [i for i in indices if i not in dropped], skipped)
