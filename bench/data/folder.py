"""Any folder of images with a CSV of labels and optional boxes and masks: a team's own data."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.core.errors import ConfigError
from bench.core.paths import read_lines
from bench.data.files import FileDataset


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
    box: ``image`` (path relative to ``root``: any image PIL reads, or a float ``.npy`` / ``.pt``
    array of pixel values in [0, 1], see :mod:`bench.data.files`), ``label`` (a class name from
    ``classes`` or an integer index), optionally ``id`` (default: the image path without its
    suffix), ``x0, y0, x1, y1`` (a box of that label in original pixels, 0-based, exclusive end;
    leave them empty for an image without boxes) and ``mask`` (the path, relative to ``root``, of
    a mask of that label: an image or array of the image's size, nonzero = the region). Rows of
    the same image and label merge their boxes and masks (a pair without any mask has an empty
    region, which the localisation metrics flag); an image listed with several labels gives one
    sample per label, with ``:<class>`` appended to its id.

    Args:
        root: the images' folder.
        labels: the CSV (absolute, or relative to ``root``).
        classes: class names in the model's index order, or a text file of them (one a line);
            default: integer labels as given, or the sorted names found in the CSV.
        num_classes: the model's class count when ``classes`` is not given (the config passes the
            model's; null = the largest integer label + 1).
        input_size: the model's input ``(H, W)``.
        mean: the model's normalisation mean.
        std: the model's normalisation std.
        resize: ``stretch`` (default) or ``center_crop``.
        resize_size: shorter side before a centre crop.
        name: the ``dataset`` column of result rows.
        split: the ``split`` column.
        pointing_tolerance: pointing-game tolerance in original pixels; null (default) = the
            protocol's 15 px per 224 px of each image's longer side.
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
        pointing_tolerance: float | None = None,
    ) -> None:
        super().__init__(
            root, input_size, mean, std, resize, resize_size, name, split, pointing_tolerance
        )
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
                    f"{csv_path} has no '{col}' column; accepted header: "
                    "image,label[,id][,x0,y0,x1,y1][,mask]."
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
        has_masks = "mask" in header
        self.fields = frozenset({"boxes"} if box_cols else set()) | (
            {"masks"} if has_masks else set()
        )

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
                    "masks": [],
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
            if has_masks and r.get("mask"):
                mask = self.root / r["mask"]
                if not mask.is_file():
                    raise ConfigError(
                        f"{csv_path}:{line}: mask {r['mask']} not found (looked at {mask})."
                    )
                rec["masks"].append(mask)
        for (image, target), rec in groups.items():
            if len(labels_of[image]) > 1:
                rec["id"] = f"{rec['id']}:{self.class_names[target]}"
            rec["boxes"] = np.asarray(rec["boxes"], dtype=np.float32).reshape(-1, 4)
            self.records.append(rec)
