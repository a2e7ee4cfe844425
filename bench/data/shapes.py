"""The embedded benchmark: a seeded synthetic shapes dataset with known object boxes and masks.

Each RGB image shows one class-defining shape (its class is the shape; its colour, size,
rotation and position are random) on a smooth textured background, plus distractors (line
segments and scribbles) drawn from the same distribution for every class, so they carry no class
information. Every image is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.errors import check_int
from bench.data.synthetic import SPLITS, SyntheticDataset, segment_mask

CLASSES = ["disk", "square", "triangle", "plus", "ring", "star", "frame", "crescent"]
DEFAULT_SIZES = {"train": 12000, "val": 1000, "test": 1000}


def _shape_mask(cls: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of shape ``cls`` in unit coordinates ``u, v`` (object radius 1)."""
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    if cls == "disk":
        return r <= 1.0
    if cls == "square":
        return np.maximum(au, av) <= 0.82
    if cls == "triangle":  # equilateral, pointing up (image rows grow downwards)
        return (v <= 0.5) & (v >= -1.0 + np.sqrt(3) * au * 1.0) & (au <= 0.95)
    if cls == "plus":
        return ((au <= 0.33) & (av <= 1.0)) | ((av <= 0.33) & (au <= 1.0))
    if cls == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if cls == "star":
        theta = np.arctan2(v, u)
        return r <= 0.45 + 0.55 * (0.5 + 0.5 * np.cos(5 * theta)) ** 2
    if cls == "frame":
        m = np.maximum(au, av)
        return (m <= 0.85) & (m >= 0.5)
    if cls == "crescent":
        return (r <= 1.0) & (np.hypot(u - 0.45, v) >= 0.8)
    raise KeyError(cls)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth coloured texture ``[H, W, 3]`` in [0, 1]: a bilinearly upsampled random grid plus grain."""
    cells = rng.integers(3, 7)
    grid = rng.uniform(0.0, 1.0, size=(cells + 1, cells + 1, 3))
    base = rng.uniform(0.25, 0.75, size=3)
    amp = rng.uniform(0.15, 0.35)
    t = np.linspace(0, cells, size, endpoint=False)
    i0 = np.floor(t).astype(int)
    f = (t - i0)[:, None]
    rows = grid[i0] * (1 - f)[:, :, None] + grid[i0 + 1] * f[:, :, None]  # [H, cells+1, 3]
    fc = (t - i0)[None, :, None]
    img = rows[:, i0] * (1 - fc) + rows[:, i0 + 1] * fc
    img = base + amp * (img - 0.5) + rng.normal(0.0, 0.03, size=(size, size, 3))
    return img


def _scribble(rng: np.random.Generator, size: int, scale: float) -> tuple[list[np.ndarray], float]:
    """A distractor: a polyline from a random point, one or two segments of 12-30 px (times
    ``scale``) in random directions, and its width (1.5-3.5 px times ``scale``)."""
    pts = [rng.uniform(0, size, size=2)]
    for _ in range(rng.integers(1, 3)):
        step = rng.uniform(12, 30) * scale
        a = rng.uniform(0, 2 * np.pi)
        pts.append(pts[-1] + step * np.array([np.cos(a), np.sin(a)]))
    return pts, rng.uniform(1.5, 3.5) * scale


def render(
    seed: int, split: str, index: int, size: int = 112
) -> tuple[np.ndarray, int, np.ndarray]:
    """Render one image.

    Returns:
        image ``[H, W, 3]`` uint8, the class index, and the object's bool mask ``[H, W]``.
    """
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = int(rng.integers(len(CLASSES)))
    img = _background(rng, size)
    vv, uu = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5

    scale = size / 112.0
    radius = rng.uniform(11.0, 16.0) * scale
    margin = radius + 2
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(-np.pi / 9, np.pi / 9)
    ca, sa = np.cos(angle), np.sin(angle)
    du, dv = (uu - cx) / radius, (vv - cy) / radius
    mask = _shape_mask(CLASSES[label], ca * du + sa * dv, -sa * du + ca * dv)
    keepout = (np.abs(uu - cx) <= radius + 3) & (np.abs(vv - cy) <= radius + 3)

    for _ in range(rng.integers(2, 5)):  # distractors: segments and two-segment scribbles
        pts, width = _scribble(rng, size, scale)
        dmask = np.zeros((size, size), dtype=bool)
        for p0, p1 in zip(pts[:-1], pts[1:]):
            dmask |= segment_mask(uu, vv, p0, p1, width)
        img[dmask & ~keepout] = rng.uniform(0, 1, size=3)

    colour = rng.uniform(0, 1, size=3)
    local = img[mask].mean(0) if mask.any() else img.mean((0, 1))
    if np.abs(colour - local).mean() < 0.25:  # keep the object visible against its surroundings
        colour = np.where(local > 0.5, rng.uniform(0.0, 0.25, 3), rng.uniform(0.75, 1.0, 3))
    img[mask] = colour + rng.normal(0.0, 0.02, size=(int(mask.sum()), 3))
    img = np.clip(img, 0.0, 1.0)
    return (img * 255 + 0.5).astype(np.uint8), label, mask


class ShapesDataset(SyntheticDataset):
    """The embedded synthetic benchmark (8 shape classes, one box and mask per image).

    Args:
        split: ``train | val | test``.
        size: number of images in the split (default: 12000 / 1000 / 1000).
        image_size: side of the square images in pixels (at least 96).
        seed: generator seed; the committed model was trained on seed 0.
        mean: per-channel normalisation mean (the model's).
        std: per-channel normalisation std (the model's).
        pointing_tolerance: pointing-game tolerance in pixels; the protocol's 15 px at 224 px
            scaled to this image size by default.
    """

    name = "shapes"
    class_names = CLASSES
    num_classes = len(CLASSES)

    def __init__(self, split: str = "test", size: int | None = None, **common: Any) -> None:
        super().__init__(split, **common)
        self.size = (
            DEFAULT_SIZES[split] if size is None else check_int("dataset.size", size, minimum=1)
        )

    def __len__(self) -> int:
        return self.size

    def id_of(self, index: int) -> str:
        return f"shapes-{self.seed}-{self.split}-{index:05d}"

    def raw(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """The uint8 image ``[H, W, 3]``, label and object mask of item ``index``."""
        self.check_index(index)
        return render(self.seed, self.split, index, self.image_size)
