"""COCO 2014/2017 val as (image, category) pairs with boxes, for the pointing game (TorchRay's protocol).

On-disk layout (the official zips): ``<root>/<split><year>/<file_name>`` and
``<root>/annotations/instances_<split><year>.json``. One sample per (image, category present),
with the boxes of every annotation of that category (crowd regions included; COCO boxes
``[x, y, w, h]`` become xyxy ``[x, y, x + w, y + h]``); images without annotations give no
sample. Category ids (1..90, sparse) map to contiguous indices 0..79 in id order, the usual
80-way head; ``class_indices`` maps them to another model's indices. Sample ids are
``<image id>:<category name>``.

TorchRay's protocol takes Ω from the instance masks for COCO; this loader uses the union of the
annotation boxes (masks would need polygon/RLE rasterisation), as docs/PROTOCOLS.md §3 records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.paths import resolve_path
from bench.data.files import FileDataset
from bench.data.pairs import class_mapping, is_difficult_pair, read_pair_flags


class COCODataset(FileDataset):
    """COCO instances as (image, category) pairs with boxes.

    Args:
        root: the folder holding ``<split><year>/`` and ``annotations/``.
        year: 2014 or 2017.
        annotations: the instances JSON (default ``<root>/annotations/instances_<split><year>.json``).
        images: the images' folder (default ``<root>/<split><year>``).
        class_indices: the model's index of each category (list in category-id order or mapping
            by name); null = 0..79 in category-id order.
        model_num_classes: the model's class count, checked against the mapping.
        difficult_file: flag file of difficult pairs; null = the paper's rule.
        **common: the keys of :class:`~bench.data.files.FileDataset` (``input_size``, ``mean``
            and ``std`` may follow ``root`` positionally), with COCO's defaults ``split=val`` (or
            ``train``) and ``name=coco<yy>`` (also for a null or empty ``name``).
    """

    fields = frozenset({"boxes"})

    def __init__(
        self,
        root: str,
        *args: Any,
        year: int = 2014,
        annotations: str | None = None,
        images: str | None = None,
        class_indices: Sequence[int] | Mapping[str, int] | None = None,
        model_num_classes: int | None = None,
        difficult_file: str | None = None,
        **common: Any,
    ) -> None:
        common["name"] = common.get("name") or f"coco{int(year) % 100:02d}"
        super().__init__(root, *args, **({"split": "val"} | common))
        split = self.split
        base = self.root
        ann_path = (
            resolve_path(annotations)
            if annotations
            else base / "annotations" / f"instances_{split}{year}.json"
        )
        img_dir = resolve_path(images) if images else base / f"{split}{year}"
        if not ann_path.is_file():
            raise ConfigError(
                f"dataset.annotations: {ann_path} not found; set dataset.annotations=<instances json>."
            )
        if not img_dir.is_dir():
            raise ConfigError(
                f"dataset.images: {img_dir} is not a folder; set dataset.images=<folder of {split}{year} images>."
            )
        data = json.loads(ann_path.read_text())
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise ConfigError(f"{ann_path} has no '{key}'; accepted: a COCO instances JSON.")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.class_names = [c["name"] for c in cats]
        contiguous = {c["id"]: i for i, c in enumerate(cats)}
        self.class_indices, self.num_classes = class_mapping(
            self.class_names, class_indices, model_num_classes
        )
        flags = read_pair_flags(difficult_file, self.class_names) if difficult_file else None
        self._add_pairs(data, ann_path, img_dir, contiguous, flags)

    def _add_pairs(
        self,
        data: dict,
        ann_path: Path,
        img_dir: Path,
        contiguous: dict[int, int],
        flags: set[str] | None,
    ) -> None:
        """One record per (image, category present) of the instances ``data``, with the boxes of
        that category (xyxy) and the difficult flag (the flag file's, else the paper's rule)."""
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if ann["category_id"] not in contiguous:
                raise ConfigError(
                    f"{ann_path}: annotation {ann.get('id')} has unknown category_id {ann['category_id']}."
                )
            by_image.setdefault(ann["image_id"], []).append(ann)
        for img in sorted(data["images"], key=lambda im: im["id"]):
            anns = by_image.get(img["id"], [])
            present = sorted({contiguous[a["category_id"]] for a in anns})
            for k in present:
                boxes = np.array(
                    [
                        [x, y, x + w, y + h]
                        for a in anns
                        if contiguous[a["category_id"]] == k
                        for x, y, w, h in [a["bbox"]]
                    ],
                    dtype=np.float32,
                ).reshape(-1, 4)
                pair = f"{img['id']}:{self.class_names[k]}"
                if flags is not None:
                    difficult = pair in flags
                else:
                    difficult = is_difficult_pair(
                        boxes, set(present), int(img["height"]), int(img["width"])
                    )
                self.records.append(
                    {
                        "path": img_dir / img["file_name"],
                        "target": self.class_indices[k],
                        "id": pair,
                        "boxes": boxes,
                        "difficult": difficult,
                    }
                )
