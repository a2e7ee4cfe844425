"""A real-handwriting localisation benchmark built offline from scikit-learn's bundled digits.

Each image is one of the 1,797 real 8x8 handwritten digits of ``sklearn.datasets.load_digits``
(UCI optdigits), upscaled bilinearly by a random factor of 5-6 and inked in a random dark colour onto a
larger light canvas with a smooth random texture and class-free clutter (thin line segments,
arcs and dots in the same ink distribution for every class, kept out of the digit's box). The digit's mask is
its upscaled ink above half intensity and its box is the mask's box, so localisation metrics have
exact ground truth. The 1,797 digits are split once by a fixed permutation (``SPLIT_SEED``) into
1,197 train, 200 val and 400 test digits: test digits are never seen in training, whatever the
rendering seed. Every image is a pure function of ``(seed, split, digit, render)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from bench.core.errors import check_int
from bench.data.synthetic import SPLITS, SyntheticDataset, segment_mask

CLASSES = [str(d) for d in range(10)]
#: Seed of the one permutation that splits the 1,797 digits; never change it (the model depends on it).
SPLIT_SEED = 20240
SPLIT_SIZES = {"train": 1197, "val": 200, "test": 400}
DEFAULT_RENDERS = {"train": 4, "val": 1, "test": 1}


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits as float ``[1797, 8, 8]`` ink in [0, 1] and int labels ``[1797]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


@lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """The indices (into ``load_digits()``) of each split's digits, disjoint and fixed."""
    n = len(_digits()[1])
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    a = SPLIT_SIZES["train"]
    b = a + SPLIT_SIZES["val"]
    return {"train": np.sort(perm[:a]), "val": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def _axis(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear interpolation (PyTorch's ``bilinear`` conventions)."""
    if align_corners:
        t = np.linspace(0.0, n_in - 1, n_out) if n_out > 1 else np.zeros(1)
    else:
        t = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    i0 = np.minimum(np.floor(t).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, t - i0


def _resize(a: np.ndarray, h: int, w: int, align_corners: bool = False) -> np.ndarray:
    """Bilinear resize of ``a`` ``[h0, w0, ...]`` to ``[h, w, ...]`` in NumPy (no thread pool)."""
    r0, r1, fr = _axis(a.shape[0], h, align_corners)
    c0, c1, fc = _axis(a.shape[1], w, align_corners)
    fr = fr.reshape((-1,) + (1,) * (a.ndim - 1))
    rows = a[r0] * (1 - fr) + a[r1] * fr
    fc = fc.reshape((1, -1) + (1,) * (a.ndim - 2))
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Light smooth "paper" ``[H, W, 3]`` in about [0.45, 1]: an upsampled random grid plus grain."""
    cells = int(rng.integers(3, 7))
    grid = rng.uniform(0.0, 1.0, size=(cells + 1, cells + 1, 3))
    smooth = _resize(grid, size, size, align_corners=True)
    base = rng.uniform(0.65, 0.85, size=3)
    amp = rng.uniform(0.1, 0.3)
    return base + amp * (smooth - 0.5) + rng.normal(0.0, 0.03, size=(size, size, 3))


def _ink(rng: np.random.Generator) -> np.ndarray:
    """A dark ink colour (any hue): digits and clutter share this distribution."""
    return rng.uniform(0.0, 0.35, size=3)


def render(
    seed: int, split: str, digit: int, r: int, size: int = 112
) -> tuple[np.ndarray, int, np.ndarray]:
    """Render digit ``digit`` (an index into ``load_digits()``), variant ``r``.

    Returns:
        image ``[H, W, 3]`` uint8, the class (0-9), and the digit's bool mask ``[H, W]``.
    """
    images, labels = _digits()
    rng = np.random.default_rng([seed, SPLITS[split], digit, r])
    img = _texture(rng, size)
    scale = size / 112.0
    side = int(round(8 * rng.uniform(5.0, 6.0) * scale))
    ink = np.clip(_resize(images[digit].astype(np.float64), side, side), 0.0, 1.0)
    x0, y0 = (int(v) for v in rng.integers(2, size - side - 2, size=2))
    alpha = np.zeros((size, size), dtype=np.float64)
    alpha[y0 : y0 + side, x0 : x0 + side] = ink
    mask = alpha > 0.5

    vv, uu = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    keep = np.zeros((size, size), dtype=bool)
    keep[max(0, y0 - 3) : y0 + side + 3, max(0, x0 - 3) : x0 + side + 3] = True
    for _ in range(int(rng.integers(3, 7))):  # class-free clutter: segments, arcs, dots
        kind = rng.integers(3)
        width = rng.uniform(1.0, 2.0) * scale
        c = rng.uniform(0, size, size=2)
        if kind == 0:
            a = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(8, 24) * scale
            m = segment_mask(uu, vv, c, c + step * np.array([np.cos(a), np.sin(a)]), width)
        elif kind == 1:
            rad = rng.uniform(4, 12) * scale
            a0 = rng.uniform(0, 2 * np.pi)
            span = rng.uniform(0.5, 1.5) * np.pi
            ang = np.mod(np.arctan2(vv - c[1], uu - c[0]) - a0, 2 * np.pi)
            m = (np.abs(np.hypot(uu - c[0], vv - c[1]) - rad) <= width / 2) & (ang <= span)
        else:
            m = np.hypot(uu - c[0], vv - c[1]) <= rng.uniform(1.0, 2.5) * scale
        img[m & ~keep] = _ink(rng)

    colour = _ink(rng)
    img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    img = np.clip(img, 0.0, 1.0)
    return (img * 255 + 0.5).astype(np.uint8), int(labels[digit]), mask


class DigitsDataset(SyntheticDataset):
    """Real handwritten digits on cluttered canvases (10 classes, one box and mask per image).

    Args:
        split: ``train | val | test`` (1,197 / 200 / 400 distinct digits).
        renders: canvases per digit (default: train 4, val 1, test 1).
        image_size: canvas side in pixels (at least 96).
        seed: rendering seed (placement, scale, texture, clutter); the split never depends on it.
        mean: per-channel normalisation mean (the model's).
        std: per-channel normalisation std (the model's).
        pointing_tolerance: pointing-game tolerance in pixels (default: 15 px at 224 px, scaled).
    """

    name = "digits"
    class_names = CLASSES
    num_classes = 10

    def __init__(self, split: str = "test", renders: int | None = None, **common: Any) -> None:
        super().__init__(split, **common)
        self.renders = (
            DEFAULT_RENDERS[split]
            if renders is None
            else check_int("dataset.renders", renders, minimum=1)
        )
        self.digits = split_indices()[split]

    def __len__(self) -> int:
        return len(self.digits) * self.renders

    def _where(self, index: int) -> tuple[int, int]:
        self.check_index(index)
        return int(self.digits[index % len(self.digits)]), index // len(self.digits)

    def id_of(self, index: int) -> str:
        digit, r = self._where(index)
        return f"digits-{self.seed}-{self.split}-{digit:04d}-{r}"

    def raw(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """The uint8 image ``[H, W, 3]``, label and digit mask of item ``index``."""
        digit, r = self._where(index)
        return render(self.seed, self.split, digit, r, self.image_size)
