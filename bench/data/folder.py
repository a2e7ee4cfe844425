"""Any folder of images with a CSV of labels and optional boxes and masks: a team's own data."""

from __future__ import annotations

import codecs
import csv
import io
import os
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


HEADER = "image,label[,id][,x0,y0,x1,y1][,mask]"


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and ``(line, row)`` of each row of the labels CSV at ``path`` (UTF-8, with or
    without a byte-order mark; values stripped), or a ConfigError naming the file and line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        at = err.start + (len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0)
        line = raw[:at].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: byte {at} (0x{raw[at]:02x}) is not UTF-8 ({err.reason}); accepted: "
            "a UTF-8 CSV (save it as UTF-8, e.g. a spreadsheet's 'CSV UTF-8')."
        ) from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        for row in reader:
            rows.append(
                (reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k})
            )
    except csv.Error as err:
        raise ConfigError(
            f"{path}:{reader.line_num}: not a valid CSV ({err}); accepted: a CSV with the header "
            f"{HEADER} and one row per image."
        ) from err
    return header, rows


def _inside(root: Path, rel: str) -> bool:
    """Whether ``root / rel`` names a path inside ``root``: lexically (no ``..`` out of it, no
    absolute path elsewhere; a symlink inside the root is followed wherever it points), or once
    both are resolved (an absolute path to the root's real location)."""
    path = root / rel
    if Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root)):
        return True
    return path.resolve().is_relative_to(root.resolve())


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
        header, rows = read_csv(csv_path)
        if not header:
            raise ConfigError(
                f"{csv_path} is empty; accepted: a CSV with the header {HEADER} and one row per image."
            )
        for col in ("image", "label"):
            if col not in header:
                raise ConfigError(
                    f"{csv_path} has no '{col}' column; accepted header: "
                    "image,label[,id][,x0,y0,x1,y1][,mask]."
                )
        if not rows:
            raise ConfigError(
                f"{csv_path} has a header but no rows; accepted: one row per image ({HEADER})."
            )
        box_cols = _box_columns(header)
        if isinstance(classes, str):
            classes = read_lines(
                classes if Path(classes).is_absolute() else self.root / classes, "dataset.classes"
            )
        for line, r in rows:
            if not r["label"]:
                names = f" ({', '.join(str(c) for c in list(classes)[:5])}...)" if classes else ""
                raise ConfigError(
                    f"{csv_path}:{line}: the label is empty; accepted: a class name{names} or an "
                    "integer class index, on every row."
                )
        raw_labels = [r["label"] for _, r in rows]
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
        first_line: dict[tuple[str, int], int] = {}
        labels_of: dict[str, set[int]] = {}
        for line, r in rows:
            lb = r["label"]
            if lb in index:
                target = index[lb]
            elif lb.lstrip("-").isdigit() and 0 <= int(lb) < self.num_classes:
                target = int(lb)
            else:
                raise ConfigError(
                    f"{csv_path}:{line}: label={lb} is not a class; accepted: 0..{self.num_classes - 1} or {', '.join(self.class_names[:5])}..."
                )
            if not r["image"]:
                raise ConfigError(
                    f"{csv_path}:{line}: the image is empty; accepted: a path relative to "
                    f"dataset.root={self.root}."
                )
            if not _inside(self.root, r["image"]):
                raise ConfigError(
                    f"{csv_path}:{line}: image {r['image']} is outside the dataset's folder; "
                    f"accepted: a path inside dataset.root={self.root}."
                )
            path = self.root / r["image"]
            if not path.is_file():
                raise ConfigError(
                    f"{csv_path}:{line}: image {r['image']} not found (looked at {path})."
                )
            key = (r["image"], target)
            first_line.setdefault(key, line)
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
                if not _inside(self.root, r["mask"]):
                    raise ConfigError(
                        f"{csv_path}:{line}: mask {r['mask']} is outside the dataset's folder; "
                        f"accepted: a path inside dataset.root={self.root}."
                    )
                mask = self.root / r["mask"]
                if not mask.is_file():
                    raise ConfigError(
                        f"{csv_path}:{line}: mask {r['mask']} not found (looked at {mask})."
                    )
                rec["masks"].append(mask)
        owner: dict[str, tuple[str, int]] = {}
        for (image, target), rec in groups.items():
            if len(labels_of[image]) > 1:
                rec["id"] = f"{rec['id']}:{self.class_names[target]}"
            other = owner.setdefault(rec["id"], (image, target))
            if other != (image, target):
                raise ConfigError(
                    f"{csv_path}:{first_line[other]} and line {first_line[image, target]}: "
                    f"images {other[0]} and {image} both have the sample id {rec['id']}; "
                    "accepted: one id per image (distinct values in an id column, or image "
                    "paths that differ without their suffix)."
                )
            rec["boxes"] = np.asarray(rec["boxes"], dtype=np.float32).reshape(-1, 4)
            self.records.append(rec)
