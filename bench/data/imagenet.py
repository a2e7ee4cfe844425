"""ImageNet (ILSVRC2012) validation in the usual folder layout, with the ILSVRC bounding boxes.

Layout: ``<root>/<wnid>/<image>.JPEG`` (the val set after the usual ``valprep.sh``; ``root`` may
also be the folder holding ``val/``). Class indices are the sorted WordNet ids (torchvision's
order) unless ``class_index`` gives them: a text file of wnids one a line in index order, or
Keras' ``imagenet_class_index.json`` (``{"0": ["n01440764", "tench"], ...}``). Boxes (optional)
come from the per-image ILSVRC XML files in ``boxes`` (``<boxes>/<image stem>.xml`` or
``<boxes>/<wnid>/<image stem>.xml``); only the boxes of the image's label are kept. ILSVRC
boxes are taken as 0-based inclusive pixel coordinates (``one_based: true`` for 1-based), giving
``x1 = xmax + 1``. An image without an XML file has no boxes (its pointing-game row is flagged).

Default resize is torchvision's evaluation transform (``center_crop``: boxes are moved into the
crop window, see :mod:`bench.data.folder`), so accuracy matches the weights' published numbers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.paths import existing_dir, existing_file, read_lines
from bench.data.files import IMAGE_SUFFIXES, FileDataset
from bench.data.voc import parse_annotation


def read_class_index(path: str) -> list[str]:
    """Wnids in the model's index order from a text file (one a line) or Keras' class-index JSON."""
    if str(path).endswith(".json"):
        data = json.loads(existing_file(path, "dataset.class_index").read_text())
        return [data[str(i)][0] for i in range(len(data))]
    return [line.split()[0] for line in read_lines(path, "dataset.class_index")]


class ImageNetDataset(FileDataset):
    """ImageNet validation images with labels from their folders and optional ILSVRC boxes.

    Args:
        root: the val folder of ``<wnid>/`` subfolders (or its parent holding ``<split>/``).
        boxes: folder of the per-image ILSVRC XML files; null = no boxes (no localisation metrics).
        class_index: wnids in the model's index order (file); null = sorted subfolder names.
        one_based: the XML boxes are 1-based inclusive (VOC style) rather than 0-based inclusive.
        **common: the keys of :class:`~bench.data.files.FileDataset` (``input_size``, ``mean``
            and ``std`` may follow ``root`` positionally), with ImageNet's defaults ``split=val``,
            ``name=imagenet`` and ``resize=center_crop`` (``resize_size``: the model's shorter
            side before the centre crop, e.g. 256 or 232).
    """

    def __init__(
        self,
        root: str,
        *args: Any,
        boxes: str | None = None,
        class_index: str | None = None,
        one_based: bool = False,
        **common: Any,
    ) -> None:
        defaults = {"split": "val", "name": "imagenet", "resize": "center_crop"}
        super().__init__(root, *args, **(defaults | common))
        base = self.root
        if (base / self.split).is_dir() and not any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in base.glob("*/*")
        ):
            base = self.root = base / self.split
        folders = sorted(p.name for p in base.iterdir() if p.is_dir())
        if not folders:
            raise ConfigError(
                f"dataset.root={root} has no class subfolders; accepted: <root>/<wnid>/<image>.JPEG."
            )
        self.class_names = read_class_index(class_index) if class_index else folders
        index = {w: i for i, w in enumerate(self.class_names)}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise ConfigError(
                f"dataset.root has folders not in the class index, e.g. {unknown[:3]}."
            )
        self.num_classes = len(self.class_names)
        box_dir = existing_dir(boxes, "dataset.boxes") if boxes else None
        self.fields = frozenset({"boxes"}) if box_dir else frozenset()
        shift = 1.0 if one_based else 0.0
        for wnid in folders:
            for path in sorted((base / wnid).iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                rec = {"path": path, "target": index[wnid], "id": path.stem, "boxes": None}
                if box_dir is not None:
                    xml = next(
                        (
                            x
                            for x in (
                                box_dir / f"{path.stem}.xml",
                                box_dir / wnid / f"{path.stem}.xml",
                            )
                            if x.is_file()
                        ),
                        None,
                    )
                    found = []
                    if (
                        xml is not None
                    ):  # parse_annotation returns VOC's xmin-1 .. xmax; undo the shift
                        objects, _ = parse_annotation(xml)
                        found = [
                            b
                            + np.array(
                                [1 - shift, 1 - shift, 1 - shift, 1 - shift], dtype=np.float32
                            )
                            for name, b, _ in objects
                            if name == wnid
                        ]
                    rec["boxes"] = np.stack(found) if found else np.zeros((0, 4), dtype=np.float32)
                self.records.append(rec)
