"""Multi-label (image, class) pairs: the model's index of each class and TorchRay's "difficult" subset.

VOC and COCO yield one sample per (image, class present), with id ``<image id>:<class name>``.
The pointing game also reports the "difficult" pairs: those listed in a flag file (TorchRay ships
``pointing_game_ebp_voc07_difficult.txt``) or, without one, those the paper defines (Zhang et
al. 2016, §5.1): another class is present in the image and the target's boxes cover less than
1/4 of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bench.core.errors import ConfigError
from bench.core.paths import read_lines


def class_mapping(
    names: Sequence[str],
    class_indices: Sequence[int] | Mapping[str, int] | None,
    model_num_classes: int | None,
) -> tuple[list[int], int]:
    """The model's index of each dataset class, and the class count the runner should check.

    ``class_indices`` null = identity (a model whose head has exactly these classes); a list gives
    the model index of each class in dataset order; a mapping gives it by class name.
    """
    if class_indices is None:
        return list(range(len(names))), len(names)
    if isinstance(class_indices, Mapping):
        missing = [n for n in names if n not in class_indices]
        if missing:
            raise ConfigError(
                f"dataset.class_indices lacks {len(missing)} class(es), e.g. {missing[:3]}; accepted: every one of {', '.join(names)}."
            )
        idx = [int(class_indices[n]) for n in names]
    else:
        idx = [int(i) for i in class_indices]
        if len(idx) != len(names):
            raise ConfigError(
                f"dataset.class_indices has {len(idx)} entries; accepted: {len(names)}, one per class in order ({', '.join(names[:3])}, ...)."
            )
    if model_num_classes is not None and not all(0 <= i < model_num_classes for i in idx):
        raise ConfigError(
            f"dataset.class_indices {idx} has indices outside 0..{model_num_classes - 1} (the model's classes)."
        )
    return idx, int(model_num_classes or 0)


def union_area(boxes: np.ndarray, height: int, width: int) -> float:
    """Exact area of the union of ``boxes`` ``[K, 4]`` (xyxy, exclusive end) clipped to the image."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return 0.0
    b = np.stack(
        [
            b[:, 0].clip(0, width),
            b[:, 1].clip(0, height),
            b[:, 2].clip(0, width),
            b[:, 3].clip(0, height),
        ],
        1,
    )
    xs = np.unique(np.concatenate([b[:, 0], b[:, 2]]))
    ys = np.unique(np.concatenate([b[:, 1], b[:, 3]]))
    if len(xs) < 2 or len(ys) < 2:
        return 0.0
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2  # centres of the elementary cells
    inside = (
        (cx[None, None] >= b[:, 0, None, None])
        & (cx[None, None] < b[:, 2, None, None])
        & (cy[None, :, None] >= b[:, 1, None, None])
        & (cy[None, :, None] < b[:, 3, None, None])
    )  # [K, Y, X]
    cell = (ys[1:] - ys[:-1])[:, None] * (xs[1:] - xs[:-1])[None, :]  # [Y, X]
    return float((inside.any(0) * cell).sum())


def is_difficult_pair(
    boxes: np.ndarray, classes_present: set, height: int, width: int, max_fraction: float = 0.25
) -> bool:
    """The pointing-game paper's "difficult" pair: another class is present in the image and the
    union of the target's boxes covers less than ``max_fraction`` (1/4, strict) of it."""
    return (
        len(classes_present) > 1
        and union_area(boxes, height, width) < max_fraction * height * width
    )


def read_pair_flags(
    path: str | Path, class_names: Sequence[str], key: str = "dataset.difficult_file"
) -> set[str]:
    """The ``<image id>:<class>`` pairs a flag file marks difficult. One line per image or pair:

    - TorchRay's format: ``<image id>`` then one 0/1 flag per class, in the dataset's class order
      (tab- or space-separated), e.g. ``pointing_game_ebp_voc07_difficult.txt``;
    - one pair a line: ``<image id>:<class>`` or ``<image id> <class>``.
    """
    names = [str(c) for c in class_names]
    known = set(names)
    pairs: set[str] = set()
    for n, line in enumerate(read_lines(path, key), start=1):
        fields = line.split()
        if len(fields) > 1 and all(f in ("0", "1") for f in fields[1:]):
            if len(fields) - 1 != len(names):
                raise ConfigError(
                    f"{key}={path}: line {n} has {len(fields) - 1} flags; accepted: one 0/1 flag "
                    f"per class ({len(names)}, in the dataset's order: {', '.join(names[:3])}, ...) "
                    "or one '<image id>:<class>' pair a line."
                )
            pairs.update(f"{fields[0]}:{c}" for c, f in zip(names, fields[1:]) if f == "1")
            continue
        if len(fields) == 1 and ":" in line:
            image, cls = line.rsplit(":", 1)
        elif len(fields) == 2:
            image, cls = fields
        else:
            raise ConfigError(
                f"{key}={path}: line {n} ({line[:40]!r}) is not a flag line; accepted: "
                "'<image id>' + one 0/1 flag per class (TorchRay) or '<image id>:<class>'."
            )
        if cls not in known:
            raise ConfigError(
                f"{key}={path}: line {n} names class {cls!r}, which is not a class of the dataset "
                f"(e.g. {', '.join(names[:3])})."
            )
        pairs.add(f"{image}:{cls}")
    return pairs
