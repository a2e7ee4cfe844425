"""The scenes benchmark: seeded multi-object images with one box and mask per object, no download.

Each image holds 2-4 objects of different classes (the shapes benchmark's eight shapes, drawn by
the same code), possibly overlapping, on a smooth texture (the shapes generator's), a tinted
texture or a low-contrast crop of a natural photograph (both from scikit-image's bundled images),
plus line distractors that carry no class information. Like VOC in TorchRay's protocol
(:mod:`bench.data.pairs`), it yields one sample per (image, class present), id
``<image id>:<class>``, whose mask is that object's visible pixels (a pixel belongs to the top
object) and whose box is the mask's extent. Each sample also carries a *partner*: the next class
present in the same image (in class order, cyclically), with its mask, for
:class:`bench.metrics.class_sensitivity.ClassSensitivity`.

Difficulty is data, not tuning: ``num_objects``, ``object_size``, ``distractors``, ``background``
and ``max_overlap`` are generator knobs whose committed defaults (conf/dataset/scenes.yaml) were
fixed before any method was scored. Every image is a pure function of ``(seed, split, index)``
and the knobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import torch

from bench.core.batch import Sample
from bench.core.errors import ConfigError, check_int, check_number
from bench.data.shapes import CLASSES, _background, _scribble, _shape_mask
from bench.data.synthetic import SPLITS, SyntheticDataset, mask_box, segment_mask

DEFAULT_SIZES = {"train": 6000, "val": 1000, "test": 1000}  # images (each gives 2-4 pairs)
BACKGROUNDS = ("smooth", "texture", "natural")
#: scikit-image's bundled grey textures and colour photographs (``skimage.data``, no download).
TEXTURES = ("brick", "grass", "gravel")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


@cache
def _bundled(name: str) -> np.ndarray:
    """A scikit-image bundled image as float ``[H, W, C]`` in [0, 1] (C = 1 or 3)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64) / 255.0
    return img[..., None] if img.ndim == 2 else img[..., :3]


def _crop(rng: np.random.Generator, src: np.ndarray, size: int) -> np.ndarray:
    """A random ``size x size`` crop of ``src`` at a random scale (stride 1 or 2), flipped/rotated."""
    step = int(rng.integers(1, 3)) if min(src.shape[:2]) >= 2 * size else 1
    span = size * step
    y = int(rng.integers(0, src.shape[0] - span + 1))
    x = int(rng.integers(0, src.shape[1] - span + 1))
    out = src[y : y + span : step, x : x + span : step]
    out = np.rot90(out, int(rng.integers(4)))
    return out[:, ::-1] if rng.random() < 0.5 else out


def background(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """Background ``[H, W, 3]`` float (clipped later) of ``kind``: ``smooth`` (the shapes
    generator's texture), ``texture`` (a tinted crop of a bundled grey texture) or ``natural``
    (a low-contrast crop of a bundled photograph)."""
    if kind == "smooth":
        return _background(rng, size)
    if kind == "texture":
        tex = _crop(rng, _bundled(TEXTURES[int(rng.integers(len(TEXTURES)))]), size)[..., 0]
        base = rng.uniform(0.25, 0.75, size=3)
        amp = rng.uniform(0.3, 0.6)
        return base + amp * (tex - tex.mean())[..., None] + rng.normal(0, 0.02, (size, size, 3))
    photo = _crop(rng, _bundled(PHOTOS[int(rng.integers(len(PHOTOS)))]), size)
    contrast = rng.uniform(0.5, 0.8)
    mean = photo.mean((0, 1))
    return mean + contrast * (photo - mean) + rng.normal(0, 0.02, (size, size, 3))


def _window(
    cx: float, cy: float, radius: float, size: int, extent: np.ndarray | None = None
) -> tuple[slice, slice]:
    """Rows and columns of the pixels within ``radius`` (or half of ``extent`` ``(w, h)``) of
    ``(cx, cy)``, clipped to the image: where a shape or stroke can lie."""
    rx, ry = (radius, radius) if extent is None else (extent[0] / 2, extent[1] / 2)
    return (
        slice(max(0, int(np.floor(cy - ry - 1))), max(0, min(size, int(np.ceil(cy + ry + 1))))),
        slice(max(0, int(np.floor(cx - rx - 1))), max(0, min(size, int(np.ceil(cx + rx + 1))))),
    )


def scene_classes(seed: int, split: str, index: int, num_objects: Sequence[int]) -> list[int]:
    """The classes of image ``index`` in drawing order (bottom first): distinct, drawn uniformly.

    A stream of its own, so the pairs of a split are known without rendering any image.
    """
    rng = np.random.default_rng([seed, SPLITS[split], index, 0])
    k = int(rng.integers(num_objects[0], num_objects[1] + 1))
    return [int(c) for c in rng.choice(len(CLASSES), size=k, replace=False)]


def render_scene(
    seed: int,
    split: str,
    index: int,
    size: int = 112,
    num_objects: Sequence[int] = (2, 4),
    object_size: Sequence[float] = (8.0, 13.0),
    distractors: Sequence[int] = (2, 5),
    background_kinds: Sequence[str] = BACKGROUNDS,
    max_overlap: float = 0.3,
) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """Render image ``index``.

    Returns:
        image ``[H, W, 3]`` uint8, the classes in drawing order (bottom first), their visible
        masks bool ``[K, H, W]`` (disjoint: a pixel belongs to the top object) and their whole
        shapes bool ``[K, H, W]``. Objects above an object cover at most ``max_overlap`` of its
        area.
    """
    classes = scene_classes(seed, split, index, num_objects)
    rng = np.random.default_rng([seed, SPLITS[split], index, 1])
    kind = background_kinds[int(rng.integers(len(background_kinds)))]
    img = background(rng, kind, size)
    vv, uu = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    scale = size / 112.0

    full: list[np.ndarray] = []  # each object's whole shape
    visible: list[np.ndarray] = []  # what is left of it under the objects above
    for cls in classes:
        radius = rng.uniform(object_size[0], object_size[1]) * scale
        angle = rng.uniform(-np.pi / 9, np.pi / 9)
        ca, sa = np.cos(angle), np.sin(angle)
        for attempt in range(200):
            if attempt and attempt % 50 == 0:  # crowded: try a smaller object
                radius *= 0.85
            margin = radius + 2
            cx, cy = rng.uniform(margin, size - margin, size=2)
            win = _window(cx, cy, radius + 1, size)  # the shape lies within radius of its centre
            du, dv = (uu[win] - cx) / radius, (vv[win] - cy) / radius
            mask = np.zeros((size, size), dtype=bool)
            mask[win] = _shape_mask(CLASSES[cls], ca * du + sa * dv, -sa * du + ca * dv)
            if mask.any() and all(
                (f & ~(v & ~mask)).sum() <= max_overlap * f.sum() for f, v in zip(full, visible)
            ):
                break
        else:  # pragma: no cover - 200 tries with shrinking objects always fit 4 objects
            raise RuntimeError(f"scene {index}: no room for object {len(full)}")
        visible = [v & ~mask for v in visible]
        full.append(mask)
        visible.append(mask.copy())

    boxes = [
        (np.abs(uu - (u0 + u1) / 2) <= (u1 - u0) / 2 + 3)
        & (np.abs(vv - (v0 + v1) / 2) <= (v1 - v0) / 2 + 3)
        for u0, v0, u1, v1 in (mask_box(f) for f in full)
    ]
    keepout = np.logical_or.reduce(boxes)
    for _ in range(rng.integers(distractors[0], distractors[1] + 1)):  # segments and scribbles
        pts, width = _scribble(rng, size, scale)
        dmask = np.zeros((size, size), dtype=bool)
        for p0, p1 in zip(pts[:-1], pts[1:]):
            lo, hi = np.minimum(p0, p1), np.maximum(p0, p1)
            win = _window((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0, size, hi - lo + width)
            dmask[win] |= segment_mask(uu[win], vv[win], p0, p1, width)
        img[dmask & ~keepout] = rng.uniform(0, 1, size=3)

    for mask in full:  # bottom first: the objects above paint over it
        colour = rng.uniform(0, 1, size=3)
        local = img[mask].mean(0)
        if np.abs(colour - local).mean() < 0.25:  # keep the object visible against what is under it
            colour = np.where(local > 0.5, rng.uniform(0.0, 0.25, 3), rng.uniform(0.75, 1.0, 3))
        img[mask] = colour + rng.normal(0.0, 0.02, size=(int(mask.sum()), 3))
    img = np.clip(img, 0.0, 1.0)
    return (img * 255 + 0.5).astype(np.uint8), classes, np.stack(visible), np.stack(full)


def _pair_of_ints(key: str, value: Sequence[int], minimum: int) -> tuple[int, int]:
    lo, hi = (check_int(key, v, minimum=minimum) for v in value)
    if len(value) != 2 or lo > hi:
        raise ConfigError(f"{key}={list(value)}; accepted: [low, high] with low <= high.")
    return lo, hi


class ScenesDataset(SyntheticDataset):
    """The scenes benchmark: (image, class) pairs of multi-object images, with masks, boxes and partners.

    Args:
        split: ``train | val | test``.
        size: number of images in the split (default: 6000 / 1000 / 1000); each gives one pair
            per object.
        num_objects: ``[low, high]`` objects per image (distinct classes; at most 8).
        object_size: ``[low, high]`` object radius in pixels per 112 px of the image side.
        distractors: ``[low, high]`` line distractors per image.
        background: the background kinds drawn uniformly per image: ``smooth`` | ``texture`` |
            ``natural``.
        max_overlap: the largest share of an object's area the objects above it may cover.
        image_size: side of the square images in pixels (at least 96).
        seed: generator seed; the committed model was trained on seed 0.
        mean: per-channel normalisation mean (the model's).
        std: per-channel normalisation std (the model's).
        pointing_tolerance: pointing-game tolerance in pixels; default: the protocol's 15 px at
            224 px, scaled to this image size.
    """

    name = "scenes"
    class_names = CLASSES
    num_classes = len(CLASSES)
    fields = frozenset({"boxes", "masks", "partners"})

    def __init__(
        self,
        split: str = "test",
        size: int | None = None,
        num_objects: Sequence[int] = (2, 4),
        object_size: Sequence[float] = (8.0, 13.0),
        distractors: Sequence[int] = (2, 5),
        background: Sequence[str] = BACKGROUNDS,
        max_overlap: float = 0.3,
        **common: Any,
    ) -> None:
        super().__init__(split, **common)
        self.size = (
            DEFAULT_SIZES[split] if size is None else check_int("dataset.size", size, minimum=1)
        )
        self.num_objects = _pair_of_ints("dataset.num_objects", num_objects, minimum=2)
        if self.num_objects[1] > len(CLASSES):
            raise ConfigError(
                f"dataset.num_objects={list(num_objects)}; accepted: at most {len(CLASSES)} "
                "(one object per class)."
            )
        lo, hi = (check_number("dataset.object_size", v, minimum=3) for v in object_size)
        if len(object_size) != 2 or lo > hi or hi > 40:
            raise ConfigError(
                f"dataset.object_size={list(object_size)}; accepted: [low, high] radii in px per "
                "112 px, 3 <= low <= high <= 40."
            )
        self.object_size = (float(lo), float(hi))
        self.distractors = _pair_of_ints("dataset.distractors", distractors, minimum=0)
        kinds = [str(k) for k in background]
        bad = [k for k in kinds if k not in BACKGROUNDS]
        if not kinds or bad:
            raise ConfigError(
                f"dataset.background={kinds}; accepted: a non-empty list of {', '.join(BACKGROUNDS)}."
            )
        self.background = tuple(kinds)
        self.max_overlap = check_number("dataset.max_overlap", max_overlap, minimum=0)
        if self.max_overlap >= 1:
            raise ConfigError(f"dataset.max_overlap={max_overlap}; accepted: 0 <= max_overlap < 1.")
        #: (image index, class, partner class) of every pair, classes of an image in class order.
        self.pairs: list[tuple[int, int, int]] = []
        for i in range(self.size):
            present = sorted(scene_classes(self.seed, split, i, self.num_objects))
            for j, c in enumerate(present):
                self.pairs.append((i, c, present[(j + 1) % len(present)]))
        self._last: tuple[int, np.ndarray, list[int], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def image_id(self, image: int) -> str:
        """The stable id of image ``image`` (without the class)."""
        return f"scenes-{self.seed}-{self.split}-{image:05d}"

    def id_of(self, index: int) -> str:
        image, cls, _ = self.pairs[index]
        return f"{self.image_id(image)}:{CLASSES[cls]}"

    def scene(self, image: int) -> tuple[np.ndarray, list[int], np.ndarray]:
        """The uint8 image ``[H, W, 3]``, its classes (drawing order) and visible masks ``[K, H, W]``."""
        if not 0 <= image < self.size:
            raise IndexError(image)
        if self._last is None or self._last[0] != image:  # a scene's pairs are consecutive
            self._last = (
                image,
                *render_scene(
                    self.seed,
                    self.split,
                    image,
                    self.image_size,
                    self.num_objects,
                    self.object_size,
                    self.distractors,
                    self.background,
                    self.max_overlap,
                )[:3],
            )
        return self._last[1:]

    def raw(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """The uint8 image ``[H, W, 3]``, target class and its object's mask of pair ``index``."""
        self.check_index(index)
        image, cls, _ = self.pairs[index]
        img, classes, masks = self.scene(image)
        return img, cls, masks[classes.index(cls)]

    def __getitem__(self, index: int) -> Sample:
        self.check_index(index)
        image, cls, partner = self.pairs[index]
        img, classes, masks = self.scene(image)
        partner_mask = torch.from_numpy(masks[classes.index(partner)])
        return self.sample(
            index, img, cls, masks[classes.index(cls)], partner=partner, partner_mask=partner_mask
        )
