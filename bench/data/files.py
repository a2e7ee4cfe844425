"""Image files on disk: loading, resizing and the base class of every file-backed dataset.

Resizing (``resize``, a key of every file-backed dataset):

- ``stretch``: plain resize of the whole image to the model's input size. The attribution map
  then covers the whole original image, and the pointing game resizes it back to ``orig_size``
  exactly; the default for the localisation sets (VOC, COCO, own folders).
- ``center_crop``: torchvision's evaluation transform (shorter side to ``resize_size``, centre
  crop to the input size), the default for ImageNet classification accuracy. The "original
  image" of the sample is then the crop window in original pixels: ``orig_size`` is the window's
  size and boxes are shifted into it and clipped, so a map resized to ``orig_size`` lines up with
  them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.core.batch import Sample
from bench.core.errors import check_choice, check_number
from bench.core.paths import existing_dir
from bench.data.base import ImageDataset

RESIZE = ("stretch", "center_crop")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


@dataclass
class Frame:
    """Where a sample's input comes from in the original image: the window ``(x0, y0, w, h)``."""

    x0: float
    y0: float
    width: float
    height: float

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the window, in original pixels (the sample's ``orig_size``)."""
        return (max(1, int(round(self.height))), max(1, int(round(self.width))))

    def boxes(self, boxes: np.ndarray | torch.Tensor | Sequence) -> torch.Tensor:
        """Boxes ``[K, 4]`` (xyxy, original pixels) moved into the window and clipped; empty ones dropped."""
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        if self.x0 == 0 and self.y0 == 0:
            return b
        h, w = self.size
        b = b - torch.tensor([self.x0, self.y0, self.x0, self.y0], dtype=torch.float32)
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        return b[keep]


class Preprocess:
    """PIL image -> normalised float ``[3, H, W]`` at the model's input size, plus its :class:`Frame`.

    Args:
        input_size: ``(H, W)`` (or one int) of the model's input.
        mean: per-channel mean of the model's normalisation.
        std: per-channel std.
        resize: ``stretch`` or ``center_crop`` (see the module docstring).
        resize_size: shorter side before the centre crop (default ``input * 256 / 224``).
    """

    def __init__(
        self,
        input_size: Sequence[int] | int,
        mean: Sequence[float],
        std: Sequence[float],
        resize: str = "stretch",
        resize_size: int | None = None,
    ) -> None:
        check_choice("dataset.resize", resize, RESIZE)
        size = [input_size] if isinstance(input_size, int) else list(input_size)
        self.size = (int(size[0]), int(size[-1]))
        self.resize = resize
        self.resize_size = (
            int(resize_size) if resize_size else int(round(min(self.size) * 256 / 224))
        )
        self.mean = torch.tensor(list(mean), dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(list(std), dtype=torch.float32)[:, None, None]

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, Frame]:
        w, h = img.size
        th, tw = self.size
        if self.resize == "stretch":
            frame = Frame(0.0, 0.0, float(w), float(h))
            out = img.resize((tw, th), Image.BILINEAR)
        else:
            scale = self.resize_size / min(w, h)
            cw, ch = min(w, tw / scale), min(h, th / scale)  # the crop window, clamped to the image
            x0, y0 = (w - cw) / 2, (h - ch) / 2
            frame = Frame(x0, y0, cw, ch)
            out = img.resize((tw, th), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        x = (
            torch.from_numpy(np.asarray(out, dtype=np.uint8).copy())
            .permute(2, 0, 1)
            .float()
            .div_(255)
        )
        return (x - self.mean) / self.std, frame


def open_rgb(path: Path) -> Image.Image:
    """The image at ``path`` as RGB (grey and palette images converted)."""
    with Image.open(path) as im:
        return im.convert("RGB")


class FileDataset(ImageDataset):
    """Base of the file-backed datasets: an index of records, the shared preprocessing, stable ids.

    The constructor checks and sets what every file dataset shares; subclasses call it first,
    then fill ``self.records`` (one dict per sample with ``path``, ``target``, ``id``, ``boxes``
    (array ``[K, 4]`` or None) and optionally ``difficult``).

    Args:
        root: the dataset's folder (``dataset.root``; relative paths are from the project root).
        input_size: the model's input ``(H, W)``.
        mean: the model's normalisation mean.
        std: the model's normalisation std.
        resize: ``stretch`` or ``center_crop`` (see the module docstring).
        resize_size: shorter side before a centre crop.
        name: the ``dataset`` column of result rows.
        split: the ``split`` column.
        pointing_tolerance: pointing-game tolerance in original pixels.
    """

    records: list[dict]
    preprocess: Preprocess

    def __init__(
        self,
        root: str,
        input_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        resize: str,
        resize_size: int | None,
        name: str,
        split: str,
        pointing_tolerance: float,
    ) -> None:
        self.root = existing_dir(root, "dataset.root")
        self.name = name
        self.split = split
        self.pointing_tolerance = check_number(
            "dataset.pointing_tolerance", pointing_tolerance, minimum=0
        )
        self.preprocess = Preprocess(input_size, mean, std, resize, resize_size)
        self.records = []

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sample_ids(self) -> list[str]:
        """The id of every item, in order, without opening any image."""
        return [r["id"] for r in self.records]

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        image, frame = self.preprocess(open_rgb(rec["path"]))
        boxes = None
        if "boxes" in self.fields:
            boxes = frame.boxes(rec["boxes"] if rec.get("boxes") is not None else np.zeros((0, 4)))
        return Sample(
            image=image,
            target=int(rec["target"]),
            id=rec["id"],
            boxes=boxes,
            orig_size=frame.size,
            difficult=bool(rec.get("difficult", False)),
        )
