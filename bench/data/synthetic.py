"""What the generated benchmarks (shapes, digits) share: the dataset shape, boxes from masks, strokes.

A generated dataset renders item ``i`` as a pure function of ``(seed, split, i)``; subclasses
implement :meth:`SyntheticDataset.raw` (uint8 image, label, object mask) and
:meth:`SyntheticDataset.id_of`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bench.core.batch import Sample
from bench.core.errors import check_choice, check_int, check_number
from bench.data.base import ImageDataset

SPLITS = {"train": 0, "val": 1, "test": 2}


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The xyxy box (0-based, exclusive end) of a bool mask ``[H, W]``."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)


def segment_mask(
    u: np.ndarray, v: np.ndarray, p0: np.ndarray, p1: np.ndarray, width: float
) -> np.ndarray:
    """Bool mask of the pixels (centres ``u, v``) within ``width / 2`` of the segment ``p0``-``p1``."""
    d = p1 - p0
    t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(u - (p0[0] + t * d[0]), v - (p0[1] + t * d[1])) <= width / 2


class SyntheticDataset(ImageDataset):
    """Base of the generated benchmarks: one object with a box and a mask per image, no files.

    Args:
        split: ``train | val | test``.
        image_size: side of the square images in pixels (at least 96).
        seed: rendering seed.
        mean: per-channel normalisation mean (the model's).
        std: per-channel normalisation std (the model's).
        pointing_tolerance: pointing-game tolerance in pixels; default: the protocol's 15 px at
            224 px, scaled to this image size.
    """

    fields = frozenset({"boxes", "masks"})

    def __init__(
        self,
        split: str = "test",
        image_size: int = 112,
        seed: int = 0,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        pointing_tolerance: float | None = None,
    ) -> None:
        self.split = check_choice("dataset.split", split, SPLITS)
        self.image_size = check_int("dataset.image_size", image_size, minimum=96)
        self.seed = check_int("dataset.seed", seed, minimum=0)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.pointing_tolerance = (
            15.0 * self.image_size / 224.0
            if pointing_tolerance is None
            else check_number("dataset.pointing_tolerance", pointing_tolerance, minimum=0)
        )

    def raw(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """The uint8 image ``[H, W, 3]``, label and object mask ``[H, W]`` of item ``index``."""
        raise NotImplementedError

    def id_of(self, index: int) -> str:
        """The stable id of item ``index``."""
        raise NotImplementedError

    @property
    def sample_ids(self) -> list[str]:
        """The id of every item, in order, without rendering any image."""
        return [self.id_of(i) for i in range(len(self))]

    def check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(index)

    def __getitem__(self, index: int) -> Sample:
        return self.sample(index, *self.raw(index))

    def sample(self, index: int, img: np.ndarray, label: int, mask: np.ndarray, **more) -> Sample:
        """Item ``index``: the rendered ``img`` (uint8 ``[H, W, 3]``) normalised, explained as
        ``label``, whose region is ``mask`` (and its box); ``more`` are further fields of
        :class:`bench.core.batch.Sample` (a partner class and its mask)."""
        image = torch.from_numpy(img).permute(2, 0, 1).float().div_(255)
        return Sample(
            image=(image - self.mean) / self.std,
            target=label,
            id=self.id_of(index),
            boxes=torch.from_numpy(mask_box(mask))[None],
            orig_size=(self.image_size, self.image_size),
            mask=torch.from_numpy(mask),
            **more,
        )
