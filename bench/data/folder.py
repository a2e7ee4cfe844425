"""Image files on disk: the shared loading/resizing helpers and a dataset for any folder + CSV.

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

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data.base import ImageDataset, Sample
from bench.errors import ConfigError, choice_error

RESIZE = ("stretch", "center_crop")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def root_dir(root: str | Path | None, key: str = "dataset.root") -> Path:
    """``root`` as an existing folder, or a ConfigError that says how to set it."""
    if root in (None, "", "???"):
        raise ConfigError(
            f"{key} is not set; point it at the dataset's folder ({key}=/path/to/it)."
        )
    from bench.models import resolve_path

    p = resolve_path(root)
    if not p.is_dir():
        raise ConfigError(f"{key}={root} is not a folder (looked at {p}).")
    return p


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
        if resize not in RESIZE:
            raise choice_error("dataset.resize", resize, RESIZE)
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


def read_lines(path: str | Path, key: str) -> list[str]:
    """Non-empty stripped lines of a text file, or a ConfigError naming ``key``."""
    from bench.models import resolve_path

    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(f"{key}={path} is not a file (looked at {p}).")
    return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]


class FileDataset(ImageDataset):
    """Base of the file-backed datasets: an index of records, the shared preprocessing, stable ids.

    Subclasses fill ``self.records`` (one dict per sample with ``path``, ``target``, ``id``,
    ``boxes`` (array ``[K, 4]`` or None) and optionally ``difficult``) in ``__init__``.
    """

    records: list[dict]
    preprocess: Preprocess

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


def _box_columns(header: list[str]) -> list[str] | None:
    cols = ["x0", "y0", "x1", "y1"]
    present = [c for c in cols if c in header]
    if present and len(present) != 4:
        raise ConfigError(
            f"the labels CSV has box columns {present}; accepted: all of x0, y0, x1, y1 or none."
        )
    return cols if present else None


class FolderDataset(FileDataset):
    """Any folder of images with a CSV of labels and optional boxes (a team's own data).

    The CSV (``labels``, default ``<root>/labels.csv``) has a header and one row per image, or per
    box: ``image`` (path relative to ``root``), ``label`` (a class name from ``classes`` or an
    integer index), optionally ``id`` (default: the image path without its suffix) and
    ``x0, y0, x1, y1`` (a box of that label in original pixels, 0-based, exclusive end; leave them
    empty for an image without boxes). Rows of the same image and label merge their boxes; an
    image listed with several labels gives one sample per label, with ``:<class>`` appended to
    its id.

    Args:
        root: the images' folder.
        labels: the CSV (absolute, or relative to ``root``).
        classes: class names in the model's index order, or a text file of them (one a line);
            default: integer labels as given, or the sorted names found in the CSV.
        num_classes: the model's class count when ``classes`` is not given (default: max label + 1).
        input_size: the model's input ``(H, W)``.
        mean: the model's normalisation mean.
        std: the model's normalisation std.
        resize: ``stretch`` (default) or ``center_crop``.
        resize_size: shorter side before a centre crop.
        name: the ``dataset`` column of result rows.
        split: the ``split`` column.
        pointing_tolerance: pointing-game tolerance in original pixels.
    """

    def __init__(
        self,
        root: str,
        input_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        labels: str = "labels.csv",
        classes: str | Sequence[str] | None = None,
        num_classes: int | None = None,
        resize: str = "stretch",
        resize_size: int | None = None,
        name: str = "folder",
        split: str = "",
        pointing_tolerance: float = 15.0,
    ) -> None:
        self.root = root_dir(root)
        self.name = name
        self.split = split
        self.pointing_tolerance = float(pointing_tolerance)
        self.preprocess = Preprocess(input_size, mean, std, resize, resize_size)
        csv_path = Path(labels) if Path(labels).is_absolute() else self.root / labels
        if not csv_path.is_file():
            raise ConfigError(f"dataset.labels={labels} not found (looked at {csv_path}).")
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
        for col in ("image", "label"):
            if col not in header:
                raise ConfigError(
                    f"{csv_path} has no '{col}' column; accepted header: image,label[,id][,x0,y0,x1,y1]."
                )
        box_cols = _box_columns(header)
        if isinstance(classes, str):
            classes = read_lines(
                classes if Path(classes).is_absolute() else self.root / classes, "dataset.classes"
            )
        raw_labels = [r["label"] for r in rows]
        if classes is not None:
            self.class_names = [str(c) for c in classes]
        elif all(lb.lstrip("-").isdigit() for lb in raw_labels):
            n = num_classes or (max(int(lb) for lb in raw_labels) + 1 if raw_labels else 0)
            self.class_names = [str(i) for i in range(n)]
        else:
            self.class_names = sorted(set(raw_labels))
        index = {c: i for i, c in enumerate(self.class_names)}
        self.num_classes = len(self.class_names)
        self.fields = frozenset({"boxes"}) if box_cols else frozenset()

        groups: dict[tuple[str, int], dict] = {}
        labels_of: dict[str, set[int]] = {}
        for line, r in enumerate(rows, start=2):
            lb = r["label"]
            if lb in index:
                target = index[lb]
            elif lb.lstrip("-").isdigit() and 0 <= int(lb) < self.num_classes:
                target = int(lb)
            else:
                raise ConfigError(
                    f"{csv_path}:{line}: label={lb} is not a class; accepted: 0..{self.num_classes - 1} or {', '.join(self.class_names[:5])}..."
                )
            path = self.root / r["image"]
            if not path.is_file():
                raise ConfigError(
                    f"{csv_path}:{line}: image {r['image']} not found (looked at {path})."
                )
            key = (r["image"], target)
            rec = groups.setdefault(
                key,
                {
                    "path": path,
                    "target": target,
                    "boxes": [],
                    "id": r.get("id") or str(Path(r["image"]).with_suffix("")),
                },
            )
            labels_of.setdefault(r["image"], set()).add(target)
            if box_cols and any(r.get(c) for c in box_cols):
                try:
                    box = [float(r[c]) for c in box_cols]
                except ValueError as err:
                    raise ConfigError(
                        f"{csv_path}:{line}: box {[r.get(c) for c in box_cols]} is not numeric."
                    ) from err
                if not (box[2] > box[0] and box[3] > box[1]):
                    raise ConfigError(
                        f"{csv_path}:{line}: box {box} is empty; accepted: x0 < x1 and y0 < y1 (xyxy, exclusive end)."
                    )
                rec["boxes"].append(box)
        self.records = []
        for (image, target), rec in groups.items():
            if len(labels_of[image]) > 1:
                rec["id"] = f"{rec['id']}:{self.class_names[target]}"
            rec["boxes"] = np.asarray(rec["boxes"], dtype=np.float32).reshape(-1, 4)
            self.records.append(rec)
