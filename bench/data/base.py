"""The base class of every dataset: a sequence of :class:`bench.core.batch.Sample` plus its metadata."""

from __future__ import annotations

from torch.utils.data import Dataset

from bench.core.errors import ConfigError


class ImageDataset(Dataset):
    """Base class of every dataset: a sequence of :class:`Sample` plus its metadata.

    Subclasses set ``name``, ``split``, ``num_classes``, ``class_names``, ``fields`` (the optional
    :class:`Batch` fields they provide) and implement ``__len__`` / ``__getitem__``.
    Subsetting and sharding are applied by :func:`bench.data.subset.select`.
    """

    name: str = "dataset"
    split: str = ""
    num_classes: int = 0
    class_names: list[str] = []
    fields: frozenset[str] = frozenset()
    #: Pointing-game tolerance in pixels of the original image that this set's protocol uses
    #: (None: 15 px per 224 px of each image's longer side).
    pointing_tolerance: float | None = 15.0

    def require(self, needed: set[str] | frozenset[str], who: str) -> None:
        """Raise a ConfigError when ``who`` needs fields this dataset does not provide."""
        missing = set(needed) - set(self.fields)
        if missing:
            raise ConfigError(
                f"{who} needs {', '.join(sorted(missing))}, which dataset={self.name} does not "
                f"provide (it provides: {', '.join(sorted(self.fields)) or 'labels only'})."
            )
