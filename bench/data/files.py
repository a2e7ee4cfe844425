"""Image files on disk: loading, resizing and the base class of every file-backed dataset.

Resizing (``resize``, a key of every file-backed dataset):

- ``stretch``: plain resize of the whole image to the model's input size. The attribution map
  then covers the whole original image, and the pointing game resizes it back to ``orig_size``
  exactly; the default for the localisation sets (VOC, COCO, own folders).
- ``center_crop``: torchvision's evaluation transform (shorter side to ``resize_size``, centre
  crop to the input size), the default for ImageNet classification accuracy. The "original
  image" of the sample is then the crop window in original pixels: ``orig_size`` is the window's
  size and boxes are shifted into it and clipped, so a map resized to ``orig_size`` lines up with
  them.

Images are any format PIL opens (8-bit RGB after conversion), or float arrays (``.npy``, ``.pt``:
``[H, W, 3]`` or ``[3, H, W]`` pixel values in [0, 1]) for inputs that should not be quantised
to 8 bits; both are resized by PIL's bilinear filter (floats channel by channel in PIL's 32-bit
float mode, so the two agree up to the quantisation). Masks (any image, or a ``.npy`` / ``.pt``
array; nonzero = the region) are resized with the same window, nearest neighbour.

Bad files (:meth:`FileDataset.check_files`, run by :func:`bench.data.subset.select` on the
job's selected items before any compute, ``dataset.on_bad_sample``): a cheap pass that reads each
image's and mask's header (PIL's format, size and mode; an array's shape and dtype) and, for JPEG
and PNG, the last bytes (a truncated file lacks the end marker; only such a file is then decoded,
to tell a truncated one from one with trailing data). What it cannot see without decoding (a
corrupt middle with an intact end) is still a one-line ConfigError naming the file when it is read.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.core.batch import Sample
from bench.core.errors import ConfigError, check_choice, check_number
from bench.core.paths import existing_dir
from bench.data.base import ImageDataset

RESIZE = ("stretch", "center_crop")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
#: Files read as arrays (float pixel values in [0, 1], or a mask) rather than through PIL.
ARRAY_SUFFIXES = (".npy", ".pt")
#: The bytes a complete file of the format ends with (before any padding), read by check_files.
END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
#: Trailing bytes some writers pad a file with after its end marker.
_PADDING = b"\x00 \t\r\n"
_TAIL = 64
#: The errors a broken file raises while PIL, NumPy or torch read it.
READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, SyntaxError)


@dataclass
class Frame:
    """Where a sample's input comes from in the original image: the window ``(x0, y0, w, h)``."""

    x0: float
    y0: float
    width: float
    height: float

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the window, in original pixels (the sample's ``orig_size``)."""
        return (max(1, int(round(self.height))), max(1, int(round(self.width))))

    def boxes(self, boxes: np.ndarray | torch.Tensor | Sequence) -> torch.Tensor:
        """Boxes ``[K, 4]`` (xyxy, original pixels) moved into the window and clipped; empty ones dropped."""
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        if self.x0 == 0 and self.y0 == 0:
            return b
        h, w = self.size
        b = b - torch.tensor([self.x0, self.y0, self.x0, self.y0], dtype=torch.float32)
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        return b[keep]


class Preprocess:
    """PIL image -> normalised float ``[3, H, W]`` at the model's input size, plus its :class:`Frame`.

    Args:
        input_size: ``(H, W)`` (or one int) of the model's input.
        mean: per-channel mean of the model's normalisation.
        std: per-channel std.
        resize: ``stretch`` or ``center_crop`` (see the module docstring).
        resize_size: shorter side before the centre crop (default ``input * 256 / 224``).
    """

    def __init__(
        self,
        input_size: Sequence[int] | int,
        mean: Sequence[float],
        std: Sequence[float],
        resize: str = "stretch",
        resize_size: int | None = None,
    ) -> None:
        check_choice("dataset.resize", resize, RESIZE)
        size = [input_size] if isinstance(input_size, int) else list(input_size)
        self.size = (int(size[0]), int(size[-1]))
        self.resize = resize
        self.resize_size = (
            int(resize_size) if resize_size else int(round(min(self.size) * 256 / 224))
        )
        self.mean = torch.tensor(list(mean), dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(list(std), dtype=torch.float32)[:, None, None]

    def frame(self, width: int, height: int) -> Frame:
        """The window of a ``width x height`` original image that becomes the model's input."""
        if self.resize == "stretch":
            return Frame(0.0, 0.0, float(width), float(height))
        th, tw = self.size
        scale = self.resize_size / min(width, height)
        cw, ch = min(width, tw / scale), min(height, th / scale)  # the window, clamped to the image
        return Frame((width - cw) / 2, (height - ch) / 2, cw, ch)

    def _resize(self, img: Image.Image, frame: Frame, resample: int) -> Image.Image:
        th, tw = self.size
        box = (frame.x0, frame.y0, frame.x0 + frame.width, frame.y0 + frame.height)
        return img.resize((tw, th), resample, box=None if self.resize == "stretch" else box)

    def __call__(self, img: Image.Image | np.ndarray) -> tuple[torch.Tensor, Frame]:
        """An RGB PIL image, or float pixels ``[H, W, 3]`` in [0, 1], as the model's input."""
        if isinstance(img, Image.Image):
            frame = self.frame(*img.size)
            out = np.asarray(self._resize(img, frame, Image.BILINEAR), dtype=np.uint8)
            x = torch.from_numpy(out.copy()).permute(2, 0, 1).float().div_(255)
        else:
            frame = self.frame(img.shape[1], img.shape[0])
            channels = [
                np.asarray(
                    self._resize(Image.fromarray(img[..., c], mode="F"), frame, Image.BILINEAR)
                )
                for c in range(3)
            ]
            x = torch.from_numpy(np.stack(channels).astype(np.float32))
        return (x - self.mean) / self.std, frame

    def mask(self, mask: np.ndarray, frame: Frame) -> torch.Tensor:
        """A bool mask ``[H0, W0]`` of the original image as bool ``[H, W]`` at the input's size."""
        img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        return torch.from_numpy(np.asarray(self._resize(img, frame, Image.NEAREST)) > 127)


def _read_array(path: Path) -> np.ndarray:
    """The array in a ``.npy`` file, or the tensor in a ``.pt`` file (only tensors and plain
    values are unpickled); a ValueError with a one-line reason for anything else."""
    if path.suffix.lower() == ".pt":
        try:
            with warnings.catch_warnings():  # "Detected pickle protocol 4": what follows says it
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
            raise ValueError(
                "not a torch file of plain tensors: the weights-only loader refused it ("
                + (detail.group(1).strip() if detail else _one_line(err)[:120])
                + "); pickled objects are never loaded (unpickling could run code)"
            ) from err
        except Exception as err:  # noqa: BLE001 - random bytes, a zip of junk
            # random bytes fail in the unpickler in many ways (an UnpicklingError above, or a
            # UnicodeDecodeError, EOFError, ... here): the same refusal, whichever it is
            raise ValueError(
                "not a torch file of plain tensors: the weights-only loader refused it ("
                f"{_one_line(err)[:200]})"
            ) from err
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"a torch file holding a {type(obj).__name__}, not a tensor")
        return obj.numpy()
    return np.load(path, allow_pickle=False)


def open_image(path: Path) -> Image.Image | np.ndarray:
    """The image at ``path``: PIL's RGB conversion for image files; float pixels ``[H, W, 3]`` in
    [0, 1] for ``.npy`` / ``.pt`` arrays (``[3, H, W]`` transposed, 8-bit values divided by 255).
    A file that cannot be read is a ConfigError naming it."""
    try:
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            with Image.open(path) as im:
                return im.convert("RGB")
        a = _read_array(path)
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise ConfigError(f"{path}: cannot read the image ({type(err).__name__}: {err}).") from err
    return _pixels(path, a)


def _pixels(path: Path, a: np.ndarray) -> np.ndarray:
    """The array ``a`` read from ``path`` as float pixels ``[H, W, 3]`` in [0, 1], or a ConfigError."""
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ConfigError(
            f"{path}: an array of shape {list(a.shape)}; accepted: [H, W, 3] or [3, H, W]."
        )
    if a.dtype.kind not in "biuf" or 0 in a.shape:
        raise ConfigError(
            f"{path}: an array of {a.dtype} and shape {list(a.shape)}; accepted: numbers, "
            "at least 1x1 px."
        )
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if not np.isfinite(a).all() or a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise ConfigError(
            f"{path}: pixel values in [{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]; accepted: finite values "
            "in [0, 1] (the dataset normalises them with the model's mean and std)."
        )
    return np.ascontiguousarray(a.clip(0, 1))


class BadFile(Exception):
    """A file :func:`check_file` refuses; the message is the one-line reason."""


@functools.cache
def _converts(mode: str, to: str) -> bool:
    try:
        Image.new(mode, (1, 1)).convert(to)
    except (ValueError, OSError, KeyError):
        return False
    return True


def _tail(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return f.read()


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def check_file(path: Path, mask: bool = False) -> tuple[int, int]:
    """``(H, W)`` of the image (or ``mask``) file at ``path`` from its header, without decoding
    its pixels; :class:`BadFile` with a one-line reason for a file that would not load.

    Image files: PIL's header (size > 0, a mode that converts to RGB, or to L for a mask) and, for
    JPEG and PNG, the end marker in the last bytes (padding after it allowed); a file without one
    is decoded, and refused if that fails (a truncated file) but kept if not (trailing data).
    ``.npy``: the header through a memory map (shape ``[H, W, 3]`` or ``[3, H, W]``, or
    ``[H, W]`` for a mask, numbers) and, for an image, the value range; ``.pt``: loaded (small)."""
    what = "mask" if mask else "image"
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BadFile(f"cannot open the {what} ({_one_line(err)})") from err
    if size == 0:
        raise BadFile(f"the {what} file is empty (0 bytes)")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        try:
            a = (
                np.load(path, mmap_mode="r", allow_pickle=False)
                if path.suffix.lower() == ".npy"
                else _read_array(path)
            )
        except READ_ERRORS as err:
            raise BadFile(f"cannot read the {what} array ({_one_line(err)})") from err
        if not mask:
            try:
                hw = _pixels(path, a).shape[:2]
            except ConfigError as err:
                raise BadFile(str(err).removeprefix(f"{path}: ").rstrip(".")) from err
            return int(hw[0]), int(hw[1])
        if a.ndim not in (2, 3) or a.dtype.kind not in "biuf" or 0 in a.shape:
            raise BadFile(
                f"a mask array of {a.dtype} and shape {list(a.shape)}; accepted: numbers of "
                "shape [H, W] or [H, W, C]"
            )
        return int(a.shape[0]), int(a.shape[1])
    try:
        with Image.open(path) as im:
            fmt, (w, h), mode = im.format, im.size, im.mode
            if w <= 0 or h <= 0:
                raise BadFile(f"a {fmt} of {w}x{h} px; accepted: at least 1x1 px")
            to = "L" if mask else "RGB"
            if not _converts(mode, to):
                raise BadFile(
                    f"a {fmt} of mode {mode}, which PIL does not convert to {to}; accepted: "
                    "e.g. RGB, RGBA, L, P, CMYK, I, F"
                )
            end = END_MARKERS.get(fmt or "")
            if end is not None and not _tail(path).rstrip(_PADDING).endswith(end):
                try:  # no end marker: decode it to tell a truncated file from trailing data
                    im.load()
                except READ_ERRORS as err:
                    raise BadFile(
                        f"a truncated or corrupt {fmt} (it does not end with the {fmt} end "
                        f"marker and does not decode: {_one_line(err)})"
                    ) from err
    except BadFile:
        raise
    except (*READ_ERRORS, Image.DecompressionBombError) as err:
        raise BadFile(f"cannot read the {what} header ({_one_line(err)})") from err
    return h, w


def open_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The bool mask ``[H, W]`` at ``path`` (nonzero = the region), checked to be ``size``."""
    try:
        if path.suffix.lower() in ARRAY_SUFFIXES:
            m = _read_array(path)
            m = m[..., 0] if m.ndim == 3 else m
        else:
            with Image.open(path) as im:
                m = np.asarray(im.convert("L"))
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise ConfigError(f"{path}: cannot read the mask ({type(err).__name__}: {err}).") from err
    if tuple(m.shape) != tuple(size):
        raise ConfigError(
            f"{path}: a mask of {m.shape[0]}x{m.shape[1]} px for an image of {size[0]}x{size[1]}; "
            "accepted: a mask of the image's size."
        )
    return m != 0


class FileDataset(ImageDataset):
    """Base of the file-backed datasets: an index of records, the shared preprocessing, stable ids.

    The constructor declares, checks and sets the keys every file dataset shares. A subclass
    declares only its own keys, takes ``root`` and then the model's ``input_size``, ``mean`` and
    ``std`` positionally or by keyword, forwards them and the shared keys (``**common``) to this
    constructor with its own defaults, then fills ``self.records`` (one dict per sample with
    ``path``, ``target``, ``id``, ``boxes`` (array ``[K, 4]`` or None) and optionally
    ``difficult``, ``masks`` (mask files), and where ``partners`` is a field ``partner`` and
    ``partner_masks``).

    Args:
        root: the dataset's folder (``dataset.root``; relative paths are from the project root).
        input_size: the model's input ``(H, W)``.
        mean: the model's normalisation mean.
        std: the model's normalisation std.
        name: the ``dataset`` column of result rows.
        split: the ``split`` column (default empty).
        resize: ``stretch`` (default) or ``center_crop`` (see the module docstring).
        resize_size: shorter side before a centre crop (default ``input * 256 / 224``).
        pointing_tolerance: pointing-game tolerance in original pixels (default 15); null = the
            protocol's 15 px per 224 px of each image's longer side.
    """

    records: list[dict]
    preprocess: Preprocess

    def __init__(
        self,
        root: str,
        input_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        name: str,
        split: str = "",
        resize: str = "stretch",
        resize_size: int | None = None,
        pointing_tolerance: float | None = 15.0,
    ) -> None:
        self.root = existing_dir(root, "dataset.root")
        self.name = name
        self.split = split
        self.pointing_tolerance = (
            None
            if pointing_tolerance is None
            else check_number("dataset.pointing_tolerance", pointing_tolerance, minimum=0)
        )
        self.preprocess = Preprocess(input_size, mean, std, resize, resize_size)
        self.records = []

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sample_ids(self) -> list[str]:
        """The id of every item, in order, without opening any image."""
        return [r["id"] for r in self.records]

    def check_files(self, indices: Sequence[int]) -> list[tuple[int, str]]:
        """``(index, reason)`` for each of ``indices`` whose image or one of whose masks would not
        load (see :func:`check_file`: headers and end markers, no pixel decoding), or whose mask is
        not the image's size; a file shared by several items (a multi-label image) is read once."""
        seen: dict[Path, tuple[int, int] | str] = {}

        def check(path: Path, mask: bool) -> tuple[int, int] | str:
            if path not in seen:
                try:
                    seen[path] = check_file(path, mask=mask)
                except BadFile as err:
                    seen[path] = str(err)
            return seen[path]

        bad: list[tuple[int, str]] = []
        for i in indices:
            rec = self.records[i]
            hw = check(rec["path"], mask=False)
            if isinstance(hw, str):
                bad.append((i, hw))
                continue
            for path in rec.get("masks") or []:
                mhw = check(path, mask=True)
                if isinstance(mhw, str):
                    bad.append((i, f"its mask {path}: {mhw}"))
                    break
                if tuple(mhw) != tuple(hw):
                    bad.append(
                        (
                            i,
                            f"its mask {path} is {mhw[0]}x{mhw[1]} px for an image of "
                            f"{hw[0]}x{hw[1]} px; accepted: a mask of the image's size",
                        )
                    )
                    break
        return bad

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        img = open_image(rec["path"])
        image, frame = self.preprocess(img)
        boxes = mask = partner_mask = None
        if "boxes" in self.fields:
            boxes = frame.boxes(rec["boxes"] if rec.get("boxes") is not None else np.zeros((0, 4)))
        hw = (img.height, img.width) if isinstance(img, Image.Image) else img.shape[:2]
        if "masks" in self.fields:
            mask = self.region(rec.get("masks", []), hw, frame)
        if "partners" in self.fields:
            partner_mask = self.region(rec.get("partner_masks", []), hw, frame)
        return Sample(
            image=image,
            target=int(rec["target"]),
            id=rec["id"],
            boxes=boxes,
            orig_size=frame.size,
            mask=mask,
            difficult=bool(rec.get("difficult", False)),
            partner=int(rec["partner"]) if "partners" in self.fields else None,
            partner_mask=partner_mask,
        )

    def region(self, masks: Sequence[Path], hw: Sequence[int], frame: Frame) -> torch.Tensor:
        """The union of the mask files ``masks`` of an ``hw`` image as bool ``[H, W]`` at the
        input's size (no mask: an empty region)."""
        region = np.zeros(tuple(hw), dtype=bool)
        for path in masks:
            region |= open_mask(path, tuple(hw))
        return self.preprocess.mask(region, frame)
