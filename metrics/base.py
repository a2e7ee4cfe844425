"""The metric contract: class-level metadata, input checks, one score per image (plus curves)."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.core.batch import Batch
from bench.core.context import Context


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


class Category(str, Enum):
    """What a metric measures (the README's and collation's grouping)."""

    FAITHFULNESS = "faithfulness"
    LOCALISATION = "localisation"
    SANITY = "sanity"
    COMPLEXITY = "complexity"
    ROBUSTNESS = "robustness"


class Direction(str, Enum):
    """Which way a score is better; ``none`` for descriptive numbers (e.g. an entropy)."""

    HIGHER = "higher"
    LOWER = "lower"
    NONE = "none"

    @classmethod
    def of(cls, higher_is_better: bool) -> Direction:
        return cls.HIGHER if higher_is_better else cls.LOWER


class Stability(str, Enum):
    """How a score moves when its inputs (the map, the model's outputs) move by float rounding,
    as they do between two CPUs whose kernels sum in another order (docs/stability.md)."""

    ROUNDING = "rounding"  # continuous in its inputs: moves by about the rounding (~1e-6)
    RANKING = "ranking"  # orders pixels or bins values: an image with near-ties may jump a step
    BINARY = "binary"  # 0/1 per image from a maximum or a threshold: an image near a tie flips


#: The possible values of a score: ``(low, high)``, ``None`` on an open side.
Range = tuple[float | None, float | None]


#: How collation aggregates a metric's rows besides the per-image mean.
AGGREGATES = ("", "class_mean")


class OrderCurves:
    """The curves of each perturbation order for the last (context, batch, maps, settings) seen.

    A metric family's MoRF, LeRF and ABC variants (``road_morf``, ``road_lerf``, ``road_abc``) in
    one job would otherwise perturb, impute and forward the same order twice per batch. One
    instance per family keeps the last batch's curves, order by order; it holds weak references to
    the context, the images and the maps (and the maps' version), so a new batch, another map or
    other settings start afresh and nothing is kept alive.
    """

    def __init__(self) -> None:
        self._refs: tuple = ()
        self._key: tuple = ()
        self._store: dict[str, Tensor] = {}

    def get(
        self,
        ctx: Context,
        batch: Batch,
        maps: Tensor,
        settings: Hashable,
        orders: Sequence[str],
        compute: Callable[[tuple[str, ...]], Tensor],
    ) -> Tensor:
        """``[B, len(orders), ...]``; ``compute(missing)`` gives ``[B, len(missing), ...]`` for the
        orders not kept yet."""
        objs = (ctx, batch.images, maps)
        key = (maps._version, batch.images._version, settings)
        if (
            len(self._refs) != 3
            or any(r() is not o for r, o in zip(self._refs, objs))
            or (self._key != key)
        ):
            self._refs, self._key, self._store = tuple(weakref.ref(o) for o in objs), key, {}
        missing = tuple(o for o in orders if o not in self._store)
        if missing:
            fresh = compute(missing)
            self._store.update({o: fresh[:, i] for i, o in enumerate(missing)})
        return torch.stack([self._store[o] for o in orders], 1)


class OrderGap:
    """The gap variant of a MoRF / LeRF family (``pixel_flipping_abc``, ``road_abc``), a mixin
    before the family's engine: both orders are computed (``orders``: MoRF, then LeRF), the score
    is LeRF's minus MoRF's, two values in [0, 1], so it lies in [-1, 1] (where the family's range
    rule bounds them), and higher is better: a faithful map keeps the two curves apart."""

    higher_is_better: ClassVar[bool] = True
    score_range: ClassVar[Range | None] = (-1.0, 1.0)  # LeRF minus MoRF of two values in [0, 1]
    orders: ClassVar[tuple[str, ...]] = ("morf", "lerf")


class Metric:
    """Base class of every metric; subclasses implement :meth:`compute`.

    Class attributes state the metadata that collation and the README use, checked when the
    class is defined: ``higher_is_better`` (the direction of the metric's own score),
    ``category`` (a :class:`Category`), ``citation``, ``requires`` (the optional :class:`Batch`
    fields it needs, checked before any compute), ``aggregate`` (one of :data:`AGGREGATES`) and
    ``suffixes``: every other score key ``compute`` may return, with its :class:`Direction`
    (None = the metric's own). :meth:`directions` gives the direction of every key an instance
    returns, and ``__call__`` refuses a score key that has none. ``score_range`` is the interval
    the metric's scores can take (``None``: unbounded), ``key_ranges`` that of a key that differs;
    :meth:`range_of` answers for a key under given settings (intervals are clipped to it).
    ``stability`` (a :class:`Stability`) says how the score moves under float rounding of its
    inputs, ``key_stability`` that of a key that differs (:meth:`stability_of`).
    ``heads`` are the models' probabilities (``model.probabilities``: ``softmax`` over the
    classes, ``sigmoid`` per class for a multi-label head) its protocol is defined for; a model
    with another is refused when the cell is built (:meth:`unfit_head`).
    """

    higher_is_better: ClassVar[bool] = True
    category: ClassVar[Category]
    citation: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    aggregate: ClassVar[str] = ""
    suffixes: ClassVar[Mapping[str, Direction | None]] = {}
    score_range: ClassVar[Range | None] = None
    key_ranges: ClassVar[Mapping[str, Range | None]] = {}
    stability: ClassVar[Stability]
    key_stability: ClassVar[Mapping[str, Stability]] = {}
    heads: ClassVar[frozenset[str]] = frozenset({"softmax", "sigmoid"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "category", None) is not None:
            cls.category = Category(cls.category)
        if getattr(cls, "stability", None) is not None:
            cls.stability = Stability(cls.stability)
        if not isinstance(cls.higher_is_better, bool):
            raise TypeError(f"{cls.__name__}.higher_is_better must be a bool")
        if cls.aggregate not in AGGREGATES:
            raise TypeError(f"{cls.__name__}.aggregate={cls.aggregate!r}; accepted: {AGGREGATES}")
        cls.suffixes = {k: (None if d is None else Direction(d)) for k, d in cls.suffixes.items()}

    def directions(self) -> dict[str, Direction]:
        """The direction of every score key this instance returns (``""`` = the metric's own score)."""
        own = Direction.of(self.higher_is_better)
        return {"": own, **{k: d or own for k, d in self.suffixes.items()}}

    @classmethod
    def range_of(cls, key: str, settings: Mapping[str, Any]) -> Range | None:
        """The values score ``key`` (``""`` = the metric's own) can take under ``settings`` (an
        instance's :meth:`settings`, or a job record's): ``(low, high)`` with ``None`` on an open
        side, or ``None`` when unbounded. Subclasses whose range depends on a setting override it."""
        return cls.key_ranges.get(key, cls.score_range) if key else cls.score_range

    @classmethod
    def stability_of(cls, key: str = "") -> Stability:
        """How score ``key`` (``""`` = the metric's own) moves under float rounding of its inputs."""
        return Stability(cls.key_stability.get(key, cls.stability))

    def ranges(self) -> dict[str, Range | None]:
        """:meth:`range_of` every score key this instance returns."""
        settings = self.settings()
        return {k: type(self).range_of(k, settings) for k in self.directions()}

    def unfit_head(self, probabilities: str) -> str | None:
        """Why this metric's protocol does not apply to a model whose probabilities are
        ``probabilities`` (``softmax`` | ``sigmoid``), or None when it does."""
        if probabilities in self.heads:
            return None
        return (
            f"its protocol reads a model with {' or '.join(sorted(self.heads))} probabilities "
            f"and the model declares model.probabilities={probabilities}; accepted: "
            f"model.probabilities={'|'.join(sorted(self.heads))}, or another metric."
        )

    def check_image(self, height: int, width: int) -> None:
        """Refuse (ConfigError ``<key>=<value> ...; accepted: ...``) a setting that makes the
        protocol meaningless on ``height x width`` inputs (a step or kernel larger than the
        image); called before any compute, once the input size is known. No check by default."""

    def curve_labels(self, model: nn.Module) -> list[str] | None:
        """Labels of the curves' x axis when they are not uniform steps (e.g. the layers a sanity
        check randomises, in order), recorded as ``curve_x``; None otherwise."""
        return None

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
        out = self.compute(ctx, batch, maps)
        undeclared = set(out.scores) - set(self.directions())
        if undeclared:
            raise TypeError(
                f"{type(self).__name__} returned score key(s) {sorted(undeclared)} without a "
                "direction; declare them in its `suffixes` (or `directions()`)."
            )
        return out

    def settings(self) -> dict[str, Any]:
        """The protocol settings of this instance (its constructor arguments), for the run record."""
        names: list[str] = []
        for cls in type(self).__mro__:
            if "__init__" in vars(cls) and cls is not object:
                names += [k for k in inspect.signature(cls.__init__).parameters if k not in names]
        return {k: getattr(self, k) for k in names if k != "self" and hasattr(self, k)}

    def meta(self) -> dict[str, Any]:
        """The metadata recorded with every run: directions, category, citation, requirements,
        aggregation and the range of every score key."""
        return {
            "higher_is_better": self.higher_is_better,
            "category": self.category.value,
            "citation": self.citation,
            "requires": sorted(self.requires),
            "aggregate": self.aggregate,
            "directions": {k: d.value for k, d in self.directions().items()},
            "ranges": {k: None if r is None else list(r) for k, r in self.ranges().items()},
        }
