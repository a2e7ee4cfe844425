"""The batch contract shared by every dataset, method and metric: a Sample per scored pair, a Batch of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Sample:
    """One scored (image, class) pair.

    Attributes:
        image: float ``[3, H, W]``, normalised for the model.
        target: the class to explain (the label; multi-label sets yield one sample per class).
        id: a stable string, the same in every run (multi-label sets append ``:<class>``).
        boxes: float ``[K, 4]`` xyxy boxes of the target class in the original image's pixel
            coordinates, 0-based, ``x1``/``y1`` exclusive (a box covers pixels ``x0 <= u < x1``).
        orig_size: ``(H, W)`` of the original image.
        mask: bool ``[H, W]`` region of the target class at the input's resolution, if known.
        difficult: whether the pair is in the dataset's "difficult" subset.
        partner: another class present in the same image (multi-object sets, for the
            class-sensitivity metric), if the set gives one.
        partner_mask: bool ``[H, W]`` region of ``partner`` at the input's resolution.
    """

    image: Tensor
    target: int
    id: str
    boxes: Tensor | None = None
    orig_size: tuple[int, int] | None = None
    mask: Tensor | None = None
    difficult: bool = False
    partner: int | None = None
    partner_mask: Tensor | None = None


@dataclass
class Batch:
    """A batch of samples, the unit every method and metric works on.

    Attributes:
        images: float ``[B, 3, H, W]`` normalised for the model.
        targets: long ``[B]``.
        ids: ``B`` stable strings.
        boxes: ``B`` tensors ``[K_i, 4]`` (see :class:`Sample`), or None when the set has none.
        orig_sizes: long ``[B, 2]`` as ``(H, W)``.
        masks: bool ``[B, H, W]`` or None.
        difficult: bool ``[B]``.
        partners: long ``[B]`` (see :class:`Sample`), or None when the set has none.
        partner_masks: bool ``[B, H, W]`` or None.
        extras: host-side inputs a method asked the loader for (``Method.loader_inputs``: e.g.
            the SLIC superpixels ``segments`` ``[B, H, W]``, computed in the DataLoader workers so
            that they overlap the device), by name; empty unless the method asks.
    """

    images: Tensor
    targets: Tensor
    ids: list[str]
    orig_sizes: Tensor
    boxes: list[Tensor] | None = None
    masks: Tensor | None = None
    difficult: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    partners: Tensor | None = None
    partner_masks: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fields(self) -> set[str]:
        """The optional fields this batch carries (``{"boxes", "masks", "partners"}`` or fewer)."""
        out = set()
        if self.boxes is not None:
            out.add("boxes")
        if self.masks is not None:
            out.add("masks")
        if self.partners is not None and self.partner_masks is not None:
            out.add("partners")
        return out

    def to(self, device: torch.device | str) -> Batch:
        """Move tensors to ``device`` (boxes and sizes stay where they are: metrics use them small)."""
        return Batch(
            images=self.images.to(device, non_blocking=True),
            targets=self.targets.to(device, non_blocking=True),
            ids=self.ids,
            orig_sizes=self.orig_sizes,
            boxes=self.boxes,
            masks=None if self.masks is None else self.masks.to(device, non_blocking=True),
            difficult=self.difficult,
            partners=None if self.partners is None else self.partners.to(device),
            partner_masks=None
            if self.partner_masks is None
            else self.partner_masks.to(device, non_blocking=True),
            extras={k: v.to(device, non_blocking=True) for k, v in self.extras.items()},
        )


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into a :class:`Batch`; optional fields must be present in all or none."""
    images = torch.stack([s.image for s in samples])
    h, w = images.shape[-2:]
    has_boxes = [s.boxes is not None for s in samples]
    has_masks = [s.mask is not None for s in samples]
    boxes = [s.boxes for s in samples] if all(has_boxes) else None
    masks = torch.stack([s.mask for s in samples]) if all(has_masks) else None
    has_partners = all(s.partner is not None and s.partner_mask is not None for s in samples)
    return Batch(
        images=images,
        targets=torch.tensor([s.target for s in samples], dtype=torch.long),
        ids=[s.id for s in samples],
        orig_sizes=torch.tensor([s.orig_size or (h, w) for s in samples], dtype=torch.long),
        boxes=boxes,
        masks=masks,
        difficult=torch.tensor([s.difficult for s in samples], dtype=torch.bool),
        partners=torch.tensor([s.partner for s in samples], dtype=torch.long)
        if has_partners
        else None,
        partner_masks=torch.stack([s.partner_mask for s in samples]) if has_partners else None,
    )


def collate_with(prepare: Callable[[Tensor], dict[str, Tensor]], samples: list[Sample]) -> Batch:
    """:func:`collate`, then ``prepare(images)`` into the batch's ``extras``: run where the
    loader collates (in its worker processes when ``num_workers > 0``)."""
    batch = collate(samples)
    batch.extras = prepare(batch.images)
    return batch
