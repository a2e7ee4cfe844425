"""Any folder of images with a CSV of labels and optional boxes and masks: a team's own data."""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
#: Separates the labels of a multi-label row (``3;7``) and their masks (``a_3.png;a_7.png``).
SEP = ";"


def split_cell(value: str) -> list[str]:
    """The ``;``-separated parts of a CSV cell, stripped (one part for a plain value)."""
    return [part.strip() for part in value.split(SEP)]


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


def _read_labels(csv_path: Path, labels: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The labels CSV's header and rows, refused when missing, empty, without the ``image`` and
    ``label`` columns or without rows."""
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
    return header, rows


def _class_names(
    csv_path: Path,
    rows: list[tuple[int, dict[str, str]]],
    classes: Sequence[str] | None,
    num_classes: int | None,
) -> list[str]:
    """The class names: ``classes``, else 0..n-1 for integer labels, else the sorted labels."""
    for line, r in rows:
        if not all(split_cell(r["label"])):
            names = f" ({', '.join(str(c) for c in list(classes)[:5])}...)" if classes else ""
            given = f" (label={r['label']!r})" if r["label"] else ""
            raise ConfigError(
                f"{csv_path}:{line}: the label is empty{given}; accepted: a class "
                f"name{names} or an integer class index, or several separated by ';' (3;7), on "
                "every row."
            )
    raw_labels = [lb for _, r in rows for lb in split_cell(r["label"])]
    if classes is not None:
        return [str(c) for c in classes]
    if all(lb.lstrip("-").isdigit() for lb in raw_labels):
        n = num_classes or (max(int(lb) for lb in raw_labels) + 1 if raw_labels else 0)
        return [str(i) for i in range(n)]
    return sorted(set(raw_labels))


def _file(root: Path, csv_path: Path, line: int, rel: str, what: str) -> Path:
    """The file ``rel`` (the row's ``image`` or ``mask``) under ``root``, refused when empty,
    outside the root or missing."""
    if not rel:
        raise ConfigError(
            f"{csv_path}:{line}: the {what} is empty; accepted: a path relative to "
            f"dataset.root={root}."
        )
    if not _inside(root, rel):
        raise ConfigError(
            f"{csv_path}:{line}: {what} {rel} is outside the dataset's folder; "
            f"accepted: a path inside dataset.root={root}."
        )
    path = root / rel
    if not path.is_file():
        raise ConfigError(f"{csv_path}:{line}: {what} {rel} not found (looked at {path}).")
    return path


def _target(
    csv_path: Path, line: int, lb: str, index: dict[str, int], class_names: list[str]
) -> int:
    """The class index of the label ``lb`` (a class name or an integer index)."""
    if lb in index:
        return index[lb]
    if lb.lstrip("-").isdigit() and 0 <= int(lb) < len(class_names):
        return int(lb)
    raise ConfigError(
        f"{csv_path}:{line}: label={lb} is not a class; accepted: 0..{len(class_names) - 1} or {', '.join(class_names[:5])}..."
    )


def _box(csv_path: Path, line: int, values: list[str | None]) -> list[float]:
    """A row's box ``x0, y0, x1, y1``, refused when not numeric or empty."""
    try:
        box = [float(v) for v in values]
    except ValueError as err:
        raise ConfigError(f"{csv_path}:{line}: box {values} is not numeric.") from err
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ConfigError(
            f"{csv_path}:{line}: box {box} is empty; accepted: x0 < x1 and y0 < y1 (xyxy, exclusive end)."
        )
    return box


def add_partners(groups: dict[tuple[str, int], dict]) -> None:
    """Give each (image, label) record a partner for class sensitivity: the next label of the
    same image in class order, cyclically (as the scenes benchmark), with that label's masks. A
    record of an image with one label is its own partner with no mask: its pair has no second
    object, and class sensitivity scores it NaN, flagged ``degenerate``."""
    present: dict[str, list[int]] = {}
    for image, target in groups:
        present.setdefault(image, []).append(target)
    for (image, target), rec in groups.items():
        labels = sorted(present[image])
        if len(labels) < 2:
            rec["partner"], rec["partner_masks"] = target, []
            continue
        partner = labels[(labels.index(target) + 1) % len(labels)]
        rec["partner"], rec["partner_masks"] = partner, groups[image, partner]["masks"]


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

    Multi-label images: a row's ``label`` may name several labels separated by ``;`` (``3;7``),
    with one mask per label in the same order (``mask`` = ``a_3.png;a_7.png``) or none; boxes
    (and more masks) of each label go on rows of their own. Where masks are given and an image
    has several labels, every sample also carries a partner (the image's next label, with its
    mask) for ``metric=class_sensitivity``; a single-label image's sample has no second object
    and scores NaN there (flagged). A model with a sigmoid per class is declared by its config
    (``model.probabilities=sigmoid``).

    Args:
        root: the images' folder.
        labels: the CSV (absolute, or relative to ``root``).
        classes: class names in the model's index order, or a text file of them (one a line);
            default: integer labels as given, or the sorted names found in the CSV.
        num_classes: the model's class count when ``classes`` is not given (the config passes the
            model's; null = the largest integer label + 1).
        **common: the keys of :class:`~bench.data.files.FileDataset` (``input_size``, ``mean``
            and ``std`` may follow ``root`` positionally), with this loader's defaults
            ``name=folder``, ``split`` empty and ``pointing_tolerance`` null (the protocol's 15 px
            per 224 px of each image's longer side).
    """

    def __init__(
        self,
        root: str,
        *args: Any,
        labels: str = "labels.csv",
        classes: str | Sequence[str] | None = None,
        num_classes: int | None = None,
        **common: Any,
    ) -> None:
        super().__init__(root, *args, **({"name": "folder", "pointing_tolerance": None} | common))
        csv_path = Path(labels) if Path(labels).is_absolute() else self.root / labels
        header, rows = _read_labels(csv_path, labels)
        box_cols = _box_columns(header)
        if isinstance(classes, str):
            classes = read_lines(
                classes if Path(classes).is_absolute() else self.root / classes, "dataset.classes"
            )
        self.class_names = _class_names(csv_path, rows, classes, num_classes)
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
            path = _file(self.root, csv_path, line, r["image"], "image")
            for target, boxes, mask in self._row_labels(csv_path, line, r, index, box_cols):
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
                rec["boxes"] += boxes
                if has_masks and mask:
                    rec["masks"].append(_file(self.root, csv_path, line, mask, "mask"))
        self._add_records(csv_path, groups, first_line, labels_of)
        if has_masks and any(len(t) > 1 for t in labels_of.values()):
            self.fields |= {"partners"}
            add_partners(groups)

    def _row_labels(
        self,
        csv_path: Path,
        line: int,
        r: dict[str, str],
        index: dict[str, int],
        box_cols: list[str] | None,
    ) -> list[tuple[int, list[list[float]], str]]:
        """``(class index, boxes, mask path or '')`` of each label of a row: one label, or
        several separated by ';' with as many masks (``a_3.png;a_7.png``) or none, and no box."""
        labels = split_cell(r["label"])
        targets = [_target(csv_path, line, lb, index, self.class_names) for lb in labels]
        has_box = bool(box_cols) and any(r.get(c) for c in box_cols)
        boxes = [_box(csv_path, line, [r.get(c) for c in box_cols])] if has_box else []
        masks = split_cell(r.get("mask") or "")
        if len(targets) == 1:
            return [(targets[0], boxes, r.get("mask") or "")]
        if has_box or (any(masks) and len(masks) != len(targets)):
            raise ConfigError(
                f"{csv_path}:{line}: label={r['label']} names {len(targets)} labels with "
                f"{'a box' if has_box else f'{len(masks)} mask(s)'}; accepted: one mask per label "
                "in the same order (mask=a_3.png;a_7.png) or none, and the boxes of each label on "
                "rows of their own (one label per row)."
            )
        return [(t, [], m if any(masks) else "") for t, m in zip(targets, masks * len(targets))]

    def _add_records(
        self,
        csv_path: Path,
        groups: dict[tuple[str, int], dict],
        first_line: dict[tuple[str, int], int],
        labels_of: dict[str, set[int]],
    ) -> None:
        """One record per (image, label), its id suffixed with the class where an image has
        several labels; two images with one id are refused."""
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
