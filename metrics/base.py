"""The metric contract: class-level metadata, input checks, one score per image (plus curves)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from bench.context import Context
from bench.data.base import Batch


@dataclass
class MetricOutput:
    """What a metric returns for a batch of ``B`` images.

    Attributes:
        scores: score name suffix -> float ``[B]``. The suffix ``""`` is the metric itself; others
            are reported as ``<metric>.<suffix>`` (e.g. ``pointing_game`` and ``pointing_game.difficult``).
        curves: score suffix -> float ``[B, T]`` (e.g. the deletion curve), stored beside the rows.
        flags: score suffix -> bool ``[B]``, True where the score is degenerate (e.g. no box of the
            class); the value is kept, the row's ``flag`` column says why.
        flag_reason: the word written in the ``flag`` column for flagged rows.
        omit: score suffix -> bool ``[B]``, True where the image is outside that score's subset
            (e.g. not a "difficult" pair): no row is written for it.
    """

    scores: dict[str, Tensor]
    curves: dict[str, Tensor] = field(default_factory=dict)
    flags: dict[str, Tensor] = field(default_factory=dict)
    flag_reason: str = "degenerate"
    omit: dict[str, Tensor] = field(default_factory=dict)


class Metric:
    """Base class of every metric; subclasses implement :meth:`compute`.

    Class attributes state the metadata collation and the README use: ``higher_is_better``,
    ``category`` (faithfulness | localisation | sanity | complexity | robustness), ``citation``,
    and ``requires`` (the optional :class:`Batch` fields it needs, checked before any compute).
    """

    higher_is_better: ClassVar[bool] = True
    category: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Score aggregation collation reports besides the per-image mean: "" or "class_mean".
    aggregate: ClassVar[str] = ""
    #: Direction of suffixed scores that differ from ``higher_is_better`` (suffix -> bool).
    directions: ClassVar[dict[str, bool]] = {}

    def compute(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        """Scores for ``maps`` float ``[B, H, W]`` explaining ``batch.targets``."""
        raise NotImplementedError

    def __call__(self, ctx: Context, batch: Batch, maps: Tensor) -> MetricOutput:
        b, _, h, w = batch.images.shape
        if maps.shape != (b, h, w):
            raise ValueError(
                f"{type(self).__name__}: maps must be [B, H, W] = {[b, h, w]}; got {list(maps.shape)}."
            )
        missing = set(self.requires) - batch.fields
        if missing:
            raise ValueError(f"{type(self).__name__} needs batch fields {sorted(missing)}.")
        return self.compute(ctx, batch, maps)

    def settings(self) -> dict[str, Any]:
        """The protocol settings of this instance (its constructor arguments), for the run record."""
        names: list[str] = []
        for cls in type(self).__mro__:
            if "__init__" in vars(cls) and cls is not object:
                names += [k for k in inspect.signature(cls.__init__).parameters if k not in names]
        return {k: getattr(self, k) for k in names if k != "self" and hasattr(self, k)}

    @classmethod
    def meta(cls) -> dict[str, Any]:
        """Class-level metadata: direction, category, citation, requirements, aggregation."""
        return {
            "higher_is_better": cls.higher_is_better,
            "category": cls.category,
            "citation": cls.citation,
            "requires": sorted(cls.requires),
            "aggregate": cls.aggregate,
            "directions": dict(cls.directions),
        }
