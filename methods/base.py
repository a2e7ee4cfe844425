"""The method contract, enforced once: input checks, model-state guard, channel pooling, upsampling."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core.context import AUTO, auto_chunk, for_pairs
from bench.core.errors import ConfigError, Unfit, check_choice, check_int, check_number
from bench.core.imaging import gaussian_smooth

#: Channel pooling of a ``[B, C, H, W]`` attribution into ``[B, H, W]`` (docs/PROTOCOLS.md §4 names).
REDUCTIONS = {
    "sum": lambda a: a.sum(1),
    "abs_sum": lambda a: a.sum(1).abs(),
    "pos_sum": lambda a: a.sum(1).clamp_min(0),
    "max_abs": lambda a: a.abs().amax(1),
    "l1": lambda a: a.abs().sum(1),
    "l2": lambda a: a.pow(2).sum(1).sqrt(),
    "l2_squared": lambda a: a.pow(2).sum(1),
}


def model_name(model: nn.Module) -> str:
    """The model's config name when a loader attached ``bench_meta``, else its class name."""
    meta = getattr(model, "bench_meta", None)
    return f"{meta.name} ({type(model).__name__})" if meta is not None else type(model).__name__


#: A need's test: why ``model`` does not meet the need for ``method`` (a phrase that can follow
#: "cannot apply to model M:"), or None when it does.
NeedTest = Callable[["Method", nn.Module], "str | None"]


@dataclass(frozen=True)
class Need:
    """A named requirement a method may declare (:attr:`Method.needs`): what a model must have
    for it to apply, and the test of it."""

    name: str
    what: str
    test: NeedTest


#: Every need a method may declare, by name, in the order :meth:`Method.check` tests them. Each is
#: registered with :func:`need` by the module that knows what it means, before the classes that
#: declare it (``relu_modules`` here, as both gradient.py and cam.py declare it).
NEEDS: dict[str, Need] = {}


def need(name: str, what: str) -> Callable[[NeedTest], NeedTest]:
    """Register ``test`` as the test of the need ``name`` (a decorator); ``what`` says in a few
    words what a model must have."""

    def register(test: NeedTest) -> NeedTest:
        if name in NEEDS:
            raise ValueError(f"need {name} is registered twice")
        NEEDS[name] = Need(name, what, test)
        return test

    return register


@need("relu_modules", "nn.ReLU modules, whose backward pass the method rewrites")
def _relu_modules(method: Method, model: nn.Module) -> str | None:
    if any(isinstance(m, nn.ReLU) for m in model.modules()):
        return None
    kinds = sorted(
        {
            type(m).__name__
            for m in model.modules()
            if isinstance(m, (nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU))
        }
    )
    return (
        "it changes the backward pass of nn.ReLU modules and the model has none "
        f"(its nonlinearities: {', '.join(kinds) or 'functional'}); accepted: ReLU networks."
    )


@contextmanager
def preserve_model(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the call; train mode and ``requires_grad`` restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class Method:
    """Base class of every attribution method.

    Subclasses implement :meth:`attribute`, returning ``[B, C, h, w]`` (pooled here with
    ``reduction``) or ``[B, h, w]`` (used as is); maps are upsampled bilinearly to the input's
    ``H, W`` here. ``method(model, images, targets)`` returns float32 ``[B, H, W]`` on the input's
    device and leaves the model as it found it.

    What a model must have for the method to apply is declared in :attr:`needs` and tested by
    :meth:`check`.

    Args:
        reduction: channel pooling for channel-wise attributions, one of :data:`REDUCTIONS`.
        smooth: Gaussian sigma as a fraction of ``max(H, W)`` applied to the final map (TorchRay's
            pointing-game protocol uses 0.02 for gradient, deconvnet and guided backprop,
            docs/PROTOCOLS.md §3); 0 = none.
    """

    #: What a model must have for this method to apply: names of :data:`NEEDS` (empty: any
    #: model that maps ``[B, 3, H, W]`` images to logits ``[B, classes]``).
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = sorted(set(cls.needs) - NEEDS.keys())
        if unknown:
            raise TypeError(
                f"{cls.__name__}.needs names {', '.join(unknown)}: not a registered need "
                f"(bench.methods.base.NEEDS: {', '.join(NEEDS)})."
            )

    def __init__(self, reduction: str = "sum", smooth: float = 0.0) -> None:
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.smooth = check_number("smooth", smooth, minimum=0)

    @property
    def name(self) -> str:
        return type(self).__name__

    def all_needs(self) -> frozenset[str]:
        """What this method as configured needs: its class's :attr:`needs` and those of any
        method it wraps (a noise tunnel's)."""
        return type(self).needs

    def unmet(self, model: nn.Module) -> tuple[str, str] | None:
        """The first of :attr:`needs` (in :data:`NEEDS` order) that ``model`` does not meet and
        why; None when it meets them all."""
        for name, required in list(NEEDS.items()):
            if name in self.needs:
                why = required.test(self, model)
                if why is not None:
                    return name, why
        return None

    def check(self, model: nn.Module) -> None:
        """Raise :class:`~bench.core.errors.Unfit` naming the first need ``model`` does not meet
        (a ConfigError for a setting that cannot be resolved, e.g. a layer name). Called once per
        run, before any compute."""
        missing = self.unmet(model)
        if missing is not None:
            raise self.unfit(model, missing[1], missing[0])

    def unfit(self, model: nn.Module, why: str, need: str = "") -> Unfit:
        """The :class:`~bench.core.errors.Unfit` for "this method cannot apply to ``model``"
        (lacking ``need``), naming both and ``why``."""
        return Unfit(self.name, model_name(model), need, why)

    def loader_inputs(self) -> Callable[[Tensor], dict[str, Tensor]] | None:
        """A picklable function of a batch's images (on the host, normalised) returning the
        host-side inputs this method needs, by name, for the data loader to compute in its
        workers (overlapping the device); None (the default) when it needs none."""
        return None

    @contextmanager
    def given(self, images: Tensor, extras: dict[str, Tensor]) -> Iterator[None]:
        """Within the block, :meth:`given_input` offers ``extras`` for exactly these ``images``
        (the same tensor object; a subset or a noisy copy computes its own)."""
        previous = getattr(self, "_given", None)
        self._given = (images, extras)
        try:
            yield
        finally:
            self._given = previous

    def given_input(self, images: Tensor, name: str) -> Tensor | None:
        """The loader's ``name`` input for ``images`` when :meth:`given` holds it, else None."""
        given = getattr(self, "_given", None)
        if given is None or given[0] is not images or name not in given[1]:
            return None
        return given[1][name]

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """Raw attributions ``[B, C, h, w]`` or ``[B, h, w]`` for ``targets`` ``[B]``."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W]; got shape {tuple(images.shape)}.")
        if targets.shape != (images.shape[0],):
            raise ValueError(
                f"targets must be [B] = [{images.shape[0]}]; got shape {tuple(targets.shape)}."
            )
        with preserve_model(model), warnings.catch_warnings():
            # captum turns on requires_grad of the inputs it differentiates and warns each time; we
            # hand it plain inputs on purpose (the caller's tensors stay untouched).
            warnings.filterwarnings(
                "ignore", message=r"Input Tensor \d+ did not already require gradients"
            )
            raw = self.attribute(model, images, targets.long())
        return self.postprocess(raw, images.shape[-2:])

    def postprocess(self, raw: Tensor, size: torch.Size) -> Tensor:
        """Pool channels and upsample ``raw`` to ``size``; float32 ``[B, H, W]``."""
        raw = raw.detach().float()
        if raw.ndim == 4:
            raw = REDUCTIONS[self.reduction](raw)
        if raw.ndim != 3:
            raise ValueError(
                f"{self.name}.attribute returned shape {tuple(raw.shape)}; expected 3 or 4 dims."
            )
        if tuple(raw.shape[-2:]) != tuple(size):
            raw = F.interpolate(
                raw[:, None], size=tuple(size), mode="bilinear", align_corners=False
            )[:, 0]
        if getattr(self, "smooth", 0.0) > 0:
            raw = gaussian_smooth(raw, self.smooth * max(size))
        return raw.contiguous()


def check_batch_size(key: str, value: int | str | None) -> int | str | None:
    """A method's batch knob: ``auto``, None (no bound) or an integer >= 1, else a ConfigError
    naming ``key``, the value and what is accepted."""
    if value is None or value == AUTO:
        return value
    try:
        return check_int(key, value, minimum=1)
    except ConfigError:
        raise ConfigError(
            f"{key}={value!r} is not valid; accepted: auto, null (no bound) or an integer >= 1."
        ) from None


def batch_limit(value: int | str | None, device: torch.device | str) -> int | None:
    """The most inputs per forward a batch knob allows on ``device``: ``auto`` = the device's
    ``chunk_size=auto`` cap (:func:`bench.core.context.auto_chunk`: 64 on a CPU, where larger
    chunks of the same images run slower, 1024 on a GPU); None = no bound."""
    return auto_chunk(device) if value == AUTO else value


def chunked_pairs(
    method: Method,
    key: str,
    items: int,
    per_item: int,
    device: torch.device | str,
    body,
    where: str | None = None,
) -> None:
    """:func:`bench.core.context.for_pairs` in chunks bounded by the method's batch knob ``key``;
    after an out-of-memory halving, the knob keeps the size that fitted (for the rest of the run)."""
    size = batch_limit(getattr(method, key), device)
    used = for_pairs(items, per_item, size, device, body, where or method.name)
    if used != size:
        setattr(method, key, used)
