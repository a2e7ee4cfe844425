"""The argument checks of :func:`bench.engine.evaluate.evaluate`: each turns one argument into a
tensor (or list) of the shape a run's batches have, or raises a one-line
:class:`~bench.core.errors.ConfigError` naming the value and what is accepted."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.config.overrides import options
from bench.core.batch import Batch
from bench.core.errors import ConfigError, choice_error

#: The ``method`` value of the rows of ``maps=`` given as one array (a dict names them itself).
MAPS_NAME = "maps"


def check_names(key: str, value: str | Sequence[str] | None, group: str) -> list[str]:
    """``value`` as a list of option names of ``conf/<group>/``, each checked."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    accepted = options(group)
    for name in names:
        if not isinstance(name, str) or name not in accepted:
            raise choice_error(group, name, accepted)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{key} names {group}={dup} twice; accepted: each {group} once.")
    return names


def as_tensor(key: str, value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(
            f"{key} is a {type(value).__name__} that is not an array ({err}); accepted: {what}."
        ) from None


def shape_text(t: Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def check_images(images: Any) -> Tensor:
    what = "a float tensor or array [N, 3, H, W], normalised for the model"
    t = as_tensor("images", images, what)
    if t.ndim != 4 or t.shape[1] != 3 or t.shape[0] == 0 or not t.is_floating_point():
        raise ConfigError(f"images is {t.dtype} {shape_text(t)}; accepted: {what}.")
    return t.float()


def check_labels(labels: Any, n: int, num_classes: int) -> Tensor:
    what = f"{n} class indices (one per image), integers in 0..{num_classes - 1}"
    t = as_tensor("labels", labels, what).reshape(-1) if not isinstance(labels, int) else None
    if t is None or t.is_floating_point() or t.dtype == torch.bool:
        raise ConfigError(f"labels={labels!r} is not valid; accepted: {what}.")
    if len(t) != n:
        raise ConfigError(f"labels has {len(t)} values but images has {n}; accepted: {what}.")
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ConfigError(
            f"labels[{i}]={int(t[i])} is not valid (the model returns {num_classes} logits); "
            f"accepted: {what}."
        )
    return t.long()


def check_ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    out = [str(i) for i in ids]
    if len(out) != n:
        raise ConfigError(f"ids has {len(out)} values but images has {n}; accepted: {n} strings.")
    if len(set(out)) != n:
        dup = next(i for i in out if out.count(i) > 1)
        raise ConfigError(f"ids has {dup!r} twice; accepted: {n} distinct strings.")
    return out


def check_orig_sizes(orig_sizes: Any, n: int, h: int, w: int) -> Tensor:
    what = f"(H, W) for all images, or [N, 2] = [{n}, 2] integers >= 1 (default: ({h}, {w}))"
    if orig_sizes is None:
        return torch.tensor([[h, w]] * n, dtype=torch.long)
    t = as_tensor("orig_sizes", orig_sizes, what)
    if t.shape == (2,):
        t = t[None].expand(n, 2)
    if (
        t.shape != (n, 2)
        or t.is_floating_point()
        and not torch.equal(t, t.round())
        or (t < 1).any()
    ):
        raise ConfigError(f"orig_sizes is {shape_text(t)}; accepted: {what}.")
    return t.long().contiguous()


def check_boxes(boxes: Any, n: int) -> list[Tensor] | None:
    what = (
        f"one [K_i, 4] xyxy array per image ({n} in all; K_i may be 0), or [N, 4] / [N, K, 4], "
        "in the original image's pixel coordinates"
    )
    if boxes is None:
        return None
    if isinstance(boxes, (Tensor, np.ndarray)):
        t = as_tensor("boxes", boxes, what).float()
        if t.ndim == 2 and t.shape == (n, 4):
            return [b[None] for b in t]
        if t.ndim == 3 and t.shape[0] == n and t.shape[2] == 4:
            return list(t)
        raise ConfigError(f"boxes is {shape_text(t)}; accepted: {what}.")
    items = list(boxes)
    if len(items) != n:
        raise ConfigError(f"boxes has {len(items)} entries but images has {n}; accepted: {what}.")
    out = []
    for i, b in enumerate(items):
        t = as_tensor(f"boxes[{i}]", b, what).float()
        if t.shape == (4,):
            t = t[None]
        if t.numel() == 0:
            t = t.reshape(0, 4)
        if t.ndim != 2 or t.shape[1] != 4:
            raise ConfigError(f"boxes[{i}] is {shape_text(t)}; accepted: {what}.")
        out.append(t)
    return out


def check_masks(masks: Any, n: int, h: int, w: int) -> Tensor | None:
    what = f"a bool tensor or array [N, H, W] = [{n}, {h}, {w}] (at the input's resolution)"
    if masks is None:
        return None
    t = as_tensor("masks", masks, what)
    if t.shape != (n, h, w):
        raise ConfigError(f"masks is {shape_text(t)}; accepted: {what}.")
    return t.bool()


def check_partners(
    partners: Any, partner_masks: Any, targets: Tensor, n: int, h: int, w: int, num_classes: int
) -> tuple[Tensor | None, Tensor | None]:
    """``partners`` ``[N]`` and ``partner_masks`` ``[N, H, W]`` checked, both or neither."""
    if partners is None and partner_masks is None:
        return None, None
    if partners is None or partner_masks is None:
        given, absent = (
            ("partners", "partner_masks")
            if partners is not None
            else (
                "partner_masks",
                "partners",
            )
        )
        raise ConfigError(f"{given} was given without {absent}; accepted: both or neither.")
    what = f"{n} class indices in [0, {num_classes}), each other than the image's label"
    t = as_tensor("partners", partners, what).reshape(-1)
    if len(t) != n or t.is_floating_point() and not torch.equal(t, t.round()):
        raise ConfigError(f"partners is {shape_text(t)}; accepted: {what}.")
    t = t.long()
    bad = (t < 0) | (t >= num_classes) | (t == targets)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ConfigError(
            f"partners[{i}]={int(t[i])} is not valid (label {int(targets[i])}); accepted: {what}."
        )
    what_m = f"a bool tensor or array [N, H, W] = [{n}, {h}, {w}] (at the input's resolution)"
    m = as_tensor("partner_masks", partner_masks, what_m)
    if m.shape != (n, h, w):
        raise ConfigError(f"partner_masks is {shape_text(m)}; accepted: {what_m}.")
    return t, m.bool()


def check_maps(maps: Any, n: int, h: int, w: int) -> dict[str, Tensor]:
    what = f"a float tensor or array [N, H, W] = [{n}, {h}, {w}], or a dict name -> such maps"
    if maps is None:
        return {}
    items = maps.items() if isinstance(maps, Mapping) else [(MAPS_NAME, maps)]
    out = {}
    for name, m in items:
        key = "maps" if not isinstance(maps, Mapping) else f"maps[{name!r}]"
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key} has no name; accepted: {what}.")
        t = as_tensor(key, m, what)
        if t.shape != (n, h, w) or not (t.is_floating_point() or t.dtype == torch.bool):
            raise ConfigError(f"{key} is {t.dtype} {shape_text(t)}; accepted: {what}.")
        out[name] = t.float()
    if not out:
        raise ConfigError(f"maps is empty; accepted: {what}.")
    return out


def per_name(key: str, args: Mapping[str, Any] | None, names: list[str]) -> dict[str, dict]:
    """``args`` as name -> overrides: either keyed by the names asked for (each value a dict), or,
    with one name, the overrides of that one."""
    if not args:
        return {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"{key}={args!r} is not valid; accepted: a dict.")
    if all(k in names and isinstance(v, Mapping) for k, v in args.items()):
        return {k: dict(v) for k, v in args.items()}
    if len(names) == 1 and not any(k in names for k in args):
        return {names[0]: dict(args)}
    stray = next((k for k in args if k not in names), next(iter(args)))
    close = difflib.get_close_matches(str(stray), names, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ConfigError(
        f"{key}[{stray!r}] is not one of the names asked for ({', '.join(names) or 'none'}).{hint} "
        f"Accepted: {{name: {{key: value}}}} for those names, or, with one name, {{key: value}}."
    )


def check_scored(
    methods: str | Sequence[str] | None,
    metrics: str | Sequence[str],
    maps: Any,
    n: int,
    h: int,
    w: int,
) -> tuple[list[str], list[str], dict[str, Tensor]]:
    """The method names, the metric names and the user's maps (by name), checked together."""
    method_names = check_names("methods", methods, "method")
    metric_names = check_names("metrics", metrics, "metric")
    if not metric_names:
        raise ConfigError("metrics is empty; accepted: one or more names of conf/metric/.")
    own_maps = check_maps(maps, n, h, w)
    if not method_names and not own_maps:
        raise ConfigError(
            "nothing to score: methods is empty and maps is None; accepted: methods=[...] "
            "(names of conf/method/) and/or maps=[N, H, W] (or a dict name -> maps)."
        )
    clash = sorted(set(own_maps) & set(method_names))
    if clash:
        raise ConfigError(
            f"maps[{clash[0]!r}] has the name of a method asked for; accepted: other names."
        )
    return method_names, metric_names, own_maps


@dataclass
class Samples:
    """The checked images and what comes with them, one entry per image."""

    images: Tensor
    targets: Tensor
    ids: list[str]
    sizes: Tensor
    boxes: list[Tensor] | None
    masks: Tensor | None
    partners: Tensor | None
    partner_masks: Tensor | None
    difficult: Tensor

    def fields(self) -> set[str]:
        """The optional fields given (what a metric's ``requires`` is checked against)."""
        fields = {"boxes"} if self.boxes is not None else set()
        fields |= {"masks"} if self.masks is not None else set()
        fields |= {"partners"} if self.partners is not None else set()
        return fields

    def batches(self, batch_size: int) -> list[Batch]:
        """The batches a run's DataLoader makes (no shuffling, the last one short)."""
        n = len(self.images)
        return [
            Batch(
                images=self.images[sl],
                targets=self.targets[sl],
                ids=self.ids[sl],
                orig_sizes=self.sizes[sl],
                boxes=None if self.boxes is None else self.boxes[sl],
                masks=None if self.masks is None else self.masks[sl],
                difficult=self.difficult[sl],
                partners=None if self.partners is None else self.partners[sl],
                partner_masks=None if self.partner_masks is None else self.partner_masks[sl],
            )
            for sl in (slice(s, s + batch_size) for s in range(0, n, batch_size))
        ]


def check_samples(
    x: Tensor,
    num_classes: int,
    labels: Any,
    ids: Sequence[str] | None,
    orig_sizes: Any,
    boxes: Any,
    masks: Any,
    partners: Any,
    partner_masks: Any,
    difficult: Any,
) -> Samples:
    """The per-image arguments of ``evaluate`` checked against the images ``x`` ``[N, 3, H, W]``
    and the model's ``num_classes``, in the order their errors are raised.

    Args:
        labels: ``N`` class indices: the classes explained (``explain="label"``) and scored.
        ids: ``N`` distinct strings for the ``image_id`` column (default ``"0"`` .. ``"N-1"``).
        orig_sizes: ``(H, W)`` or ``[N, 2]`` sizes of the original images the boxes refer to
            (default: the input size, i.e. boxes in input pixels).
        boxes: for localisation metrics: per image a ``[K_i, 4]`` xyxy box array of the target
            class in the **original image's pixel coordinates** (0-based, exclusive end;
            :class:`bench.core.batch.Sample`), or ``[N, 4]`` / ``[N, K, 4]``.
        masks: bool ``[N, H, W]`` class regions at the input resolution (``region: masks``).
        partners, partner_masks: for ``class_sensitivity``: per image a second class present
            (``N`` class indices, each other than the image's label) and its region (bool
            ``[N, H, W]``); ``masks`` is then the labelled class's region (the scenes benchmark's
            pairs, :class:`bench.core.batch.Sample`).
        difficult: bool ``[N]``: the pairs ``pointing_game.difficult`` repeats the score on.
    """
    n, _, h, w = x.shape
    targets = check_labels(labels, n, num_classes)
    image_ids = check_ids(ids, n)
    sizes = check_orig_sizes(orig_sizes, n, h, w)
    box_list = check_boxes(boxes, n)
    mask_t = check_masks(masks, n, h, w)
    partner_t, partner_mask_t = check_partners(
        partners, partner_masks, targets, n, h, w, num_classes
    )
    hard = torch.zeros(n, dtype=torch.bool) if difficult is None else None
    if hard is None:
        hard = as_tensor("difficult", difficult, f"{n} bools").reshape(-1).bool()
        if len(hard) != n:
            raise ConfigError(f"difficult has {len(hard)} values but images has {n}.")
    return Samples(x, targets, image_ids, sizes, box_list, mask_t, partner_t, partner_mask_t, hard)
