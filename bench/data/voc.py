"""PASCAL VOC (2007 test by default) as a multi-label set for the pointing game (TorchRay's protocol).

On-disk layout (the official tarball): ``<root>/JPEGImages/<id>.jpg``, ``<root>/Annotations/<id>.xml``
and ``<root>/ImageSets/Main/<split>.txt``; ``root`` may be ``VOCdevkit/VOC2007`` or ``VOCdevkit``.
One sample per (image, class present); its boxes are all boxes of that class, the ones flagged
difficult included; a pair whose boxes are all difficult is skipped (docs/PROTOCOLS.md §3). VOC
coordinates are 1-based inclusive and become 0-based exclusive-end xyxy (``x0 = xmin - 1``,
``x1 = xmax``). Sample ids are ``<image id>:<class name>``.

Images are resized to the model's input without cropping (``resize: stretch``), so the map covers
the whole image and the pointing game resizes it back to the original size.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.paths import read_lines
from bench.data.files import FileDataset
from bench.data.pairs import class_mapping, is_difficult_pair, read_pair_flags

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def _voc_root(root: Path, year: str) -> Path:
    if (root / "Annotations").is_dir():
        return root
    if (root / f"VOC{year}" / "Annotations").is_dir():
        return root / f"VOC{year}"
    raise ConfigError(
        f"dataset.root={root} holds no Annotations/ (nor VOC{year}/Annotations/); point it at VOCdevkit/VOC{year}."
    )


def parse_annotation(
    path: Path,
) -> tuple[list[tuple[str, np.ndarray, bool]], tuple[int, int] | None]:
    """Objects ``(class name, xyxy 0-based exclusive-end box, difficult)`` and the XML's ``(H, W)``."""
    root = ET.parse(path).getroot()
    size = root.find("size")
    hw = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        hw = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            continue
        xmin, ymin, xmax, ymax = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
        objects.append(
            (name, np.array([xmin - 1, ymin - 1, xmax, ymax], dtype=np.float32), difficult)
        )
    return objects, hw


class VOCDataset(FileDataset):
    """PASCAL VOC as (image, class) pairs with boxes (docs/PROTOCOLS.md §3).

    Args:
        root: ``VOCdevkit/VOC2007`` (or ``VOCdevkit``).
        year: the VOC edition (for the folder name).
        class_indices: the model's class index of each VOC class (list in VOC order or mapping
            by name); null = identity, for a model fine-tuned on the 20 VOC classes.
        model_num_classes: the model's class count, checked against the mapping.
        difficult_file: TorchRay-style flag file of difficult pairs; null = the paper's rule.
        **common: the keys of :class:`~bench.data.files.FileDataset` (``input_size``, ``mean``
            and ``std`` may follow ``root`` positionally), with VOC's defaults ``split=test`` (the
            ``ImageSets/Main/<split>.txt`` list; all annotations when the file is absent) and
            ``name=voc07``.
    """

    fields = frozenset({"boxes"})

    def __init__(
        self,
        root: str,
        *args: Any,
        year: str = "2007",
        class_indices: Sequence[int] | Mapping[str, int] | None = None,
        model_num_classes: int | None = None,
        difficult_file: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(root, *args, **({"split": "test", "name": "voc07"} | common))
        self.root = _voc_root(self.root, str(year))
        self.class_names = list(VOC_CLASSES)
        self.class_indices, self.num_classes = class_mapping(
            self.class_names, class_indices, model_num_classes
        )
        flags = read_pair_flags(difficult_file, self.class_names) if difficult_file else None
        list_file = self.root / "ImageSets" / "Main" / f"{self.split}.txt"
        if list_file.is_file():
            image_ids = read_lines(list_file, "dataset.split")
        else:
            image_ids = sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
        index = {c: i for i, c in enumerate(self.class_names)}
        for image_id in image_ids:
            xml = self.root / "Annotations" / f"{image_id}.xml"
            if not xml.is_file():
                raise ConfigError(f"{list_file} lists {image_id}, but {xml} does not exist.")
            objects, hw = parse_annotation(xml)
            unknown = {o[0] for o in objects} - set(index)
            if unknown:
                raise ConfigError(
                    f"{xml}: unknown class(es) {sorted(unknown)}; accepted: {', '.join(self.class_names)}."
                )
            present = {o[0] for o in objects}
            path = self.root / "JPEGImages" / f"{image_id}.jpg"
            for cls in sorted(present, key=index.__getitem__):
                mine = [o for o in objects if o[0] == cls]
                if all(o[2] for o in mine):  # every box of the class is difficult: skip the pair
                    continue
                boxes = np.stack([o[1] for o in mine])
                pair = f"{image_id}:{cls}"
                if flags is not None:
                    difficult = pair in flags
                else:
                    h, w = hw if hw else _image_hw(path)
                    difficult = is_difficult_pair(boxes, present, h, w)
                self.records.append(
                    {
                        "path": path,
                        "target": self.class_indices[index[cls]],
                        "id": pair,
                        "boxes": boxes,
                        "difficult": difficult,
                    }
                )


def _image_hw(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width
