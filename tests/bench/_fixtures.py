"""Tiny datasets written in the real on-disk formats (JPEG + XML / JSON / CSV) for loader tests,
and ROAD-like paired scores for the paired tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def jpeg(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)).save(
        path, "JPEG"
    )


def _voc_xml(path: Path, width: int, height: int, objects: list[tuple]) -> None:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><folder>VOC2007</folder><filename>{path.stem}.jpg</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objs}</annotation>"
    )


#: VOC fixture: (image id, width, height, [(class, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)])
VOC_IMAGES = [
    ("000001", 120, 90, [("dog", (10, 20, 60, 80), False), ("person", (70, 5, 110, 85), False)]),
    ("000002", 100, 80, [("cat", (1, 1, 100, 80), False)]),  # one big box, one class: not difficult
    (
        "000003",
        96,
        96,
        [
            ("car", (5, 5, 20, 20), False),
            ("car", (50, 50, 70, 70), True),
            ("bus", (30, 30, 40, 40), True),
        ],
    ),  # multi-instance car; bus all-difficult
    ("000004", 80, 64, []),  # no objects at all
]


def write_voc(root: Path) -> Path:
    """VOCdevkit/VOC2007 with JPEGImages, Annotations and ImageSets/Main/test.txt."""
    voc = root / "VOCdevkit" / "VOC2007"
    for i, (image_id, w, h, objects) in enumerate(VOC_IMAGES):
        jpeg(voc / "JPEGImages" / f"{image_id}.jpg", w, h, seed=i)
        _voc_xml(voc / "Annotations" / f"{image_id}.xml", w, h, objects)
    (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(i[0] for i in VOC_IMAGES) + "\n")
    return voc


COCO_CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
COCO_IMAGES = [
    (139, 64, 48),
    (285, 50, 70),
    (632, 40, 40),
]  # (id, width, height); 632 has no annotations
COCO_ANNOTATIONS = [
    {"id": 1, "image_id": 139, "category_id": 1, "bbox": [2.5, 3.0, 10.0, 20.0], "iscrowd": 0},
    {"id": 2, "image_id": 139, "category_id": 1, "bbox": [30.0, 10.0, 8.0, 8.0], "iscrowd": 0},
    {"id": 3, "image_id": 139, "category_id": 18, "bbox": [40.0, 20.0, 20.0, 25.0], "iscrowd": 0},
    {"id": 4, "image_id": 285, "category_id": 3, "bbox": [0.0, 0.0, 50.0, 70.0], "iscrowd": 0},
]


def write_coco(root: Path, year: int = 2014) -> Path:
    for i, (image_id, w, h) in enumerate(COCO_IMAGES):
        jpeg(root / f"val{year}" / f"COCO_val{year}_{image_id:012d}.jpg", w, h, seed=10 + i)
    data = {
        "images": [
            {"id": i, "width": w, "height": h, "file_name": f"COCO_val{year}_{i:012d}.jpg"}
            for i, w, h in COCO_IMAGES
        ],
        "annotations": COCO_ANNOTATIONS,
        "categories": COCO_CATEGORIES,
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_val{year}.json").write_text(json.dumps(data))
    return root


#: ImageNet fixture: wnid -> [(file stem, width, height, [boxes (0-based inclusive xmin, ymin, xmax, ymax)] or None)]
IMAGENET = {
    "n01440764": [
        ("ILSVRC2012_val_00000001", 80, 60, [(10, 5, 39, 44)]),
        ("ILSVRC2012_val_00000002", 64, 64, [(0, 0, 20, 20), (30, 30, 63, 63)]),
    ],
    "n01443537": [("ILSVRC2012_val_00000003", 60, 80, None)],  # no XML file: no boxes
}


def write_imagenet(root: Path) -> tuple[Path, Path]:
    """``root/val/<wnid>/<stem>.JPEG`` and ``root/boxes/<stem>.xml`` (ILSVRC format)."""
    seed = 20
    for wnid, items in IMAGENET.items():
        for stem, w, h, boxes in items:
            jpeg(root / "val" / wnid / f"{stem}.JPEG", w, h, seed=seed)
            seed += 1
            if boxes is not None:
                objects = [(wnid, b, False) for b in boxes] + [("n99999999", (1, 1, 5, 5), False)]
                _voc_xml(root / "boxes" / f"{stem}.xml", w, h, objects)
    return root / "val", root / "boxes"


def write_folder(root: Path) -> Path:
    """Own data: three images, labels by name, one with two boxes, one without boxes."""
    jpeg(root / "imgs" / "a.jpg", 50, 40, seed=30)
    jpeg(root / "imgs" / "b.png".replace(".png", ".jpg"), 40, 40, seed=31)
    jpeg(root / "imgs" / "c.jpg", 30, 60, seed=32)
    (root / "labels.csv").write_text(
        "image,label,x0,y0,x1,y1\n"
        "imgs/a.jpg,cat,1,2,20,30\n"
        "imgs/a.jpg,cat,25,5,45,35\n"
        "imgs/b.jpg,dog,,,,\n"
        "imgs/c.jpg,dog,0,0,30,60\n"
    )
    return root


def road_like_pairs() -> tuple[np.ndarray, np.ndarray]:
    """Two methods' ROAD accuracies (sevenths) on 71 images, as ``(a, b)``: 38 ties (zero
    differences), and the largest |a - b| (3/7) tied 13 times, 8 positive and 5 negative. Each
    difference class comes from one pair of values, so equal |a - b| are equal bit for bit.
    Where zeros are dropped (Wilcoxon's rule) the two-sided p is 0.37; kept (Pratt) 0.037;
    split (zsplit) 0.051: data on which the zero rule decides the answer."""
    pairs = (
        [(5, 2)] * 8 + [(2, 5)] * 5 + [(4, 2)] + [(2, 4)] * 9 + [(3, 4)] * 10
        + [(k % 8, k % 8) for k in range(38)]
    )  # fmt: skip
    a, b = np.array(pairs, dtype=float).T / 7
    return a, b
