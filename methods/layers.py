"""A method's layer: its stated name, what it outputs for a probe image, and how the model's stated
layout (:class:`bench.core.layers.FeatureLayout`) reads it as feature maps; shared by the CAM
family's and the attention methods' needs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError
from bench.core.layers import FeatureLayout, get_layer, module_device, probe_outputs
from bench.methods.base import Method


def stated_layer(method: Method, model: nn.Module) -> str | None:
    """The method's layer name in ``model``, ``auto`` resolved from the loader's metadata; None
    when the model states no layer (``cam_layer: null``)."""
    layer = method.layer
    if layer == "auto":
        layer = getattr(getattr(model, "bench_meta", None), "cam_layer", None)
        if not layer:
            raise ConfigError(
                f"{method.name}: layer=auto needs a model loaded by a bench.models loader (which "
                "finds the layer); name the layer instead (method.layer=<module name>)."
            )
    return layer or None


def layout_of(model: nn.Module) -> FeatureLayout | None:
    """The layout the model's loader states (``bench_meta.layout``), or None."""
    return getattr(getattr(model, "bench_meta", None), "layout", None)


def probe_layer(model: nn.Module, name: str) -> object | None:
    """What layer ``name`` outputs for one zero image at the loader's input size (None when the
    model carries no metadata to probe it with)."""
    size = getattr(getattr(model, "bench_meta", None), "input_size", None)
    if size is None:
        return None
    outputs = probe_outputs(model, size, [name])
    return outputs[-1][1] if outputs else None


NO_LAYER = "it states no cam_layer; set method.layer=<module name> (or model.cam_layer=auto)."


def probe_stated(
    method: Method, model: nn.Module, ndim: int, what: str, accepted: str
) -> tuple[str | None, str | None, object]:
    """``(error, layer name, output)`` of the method's stated layer, probed with one zero image
    at the model's input size when its loader states it (output None otherwise): the error is
    :data:`NO_LAYER` when no layer is stated, or names an output that is not ``ndim``-D
    (``what``, and what is ``accepted``)."""
    name = stated_layer(method, model)
    if name is None:
        return NO_LAYER, None, None
    layer = get_layer(model, name)
    out = probe_layer(model, name)
    if out is not None and not (isinstance(out, Tensor) and out.ndim == ndim):
        shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
        error = f"layer={name} ({type(layer).__name__}) outputs {shape}, not {what}; accepted: {accepted}"
        return error, name, out
    return None, name, out


def probe_grid(method: Method, model: nn.Module, layout: FeatureLayout) -> str | None:
    """Why the method's stated layer cannot be read as feature maps under ``layout`` (probed
    with one zero image at the model's input size), or None when it can."""
    name = stated_layer(method, model)
    if name is None:
        return NO_LAYER
    layer = get_layer(model, name)
    out = probe_layer(model, name)
    if out is None:
        return None
    try:
        method.to_grid(out, layout, model.bench_meta.input_size)
    except ConfigError as err:
        return f"layer={name} ({type(layer).__name__}): {err}"
    return None


def head_input(model: nn.Module, name: str, head: nn.Module) -> tuple[Tensor, Tensor] | None:
    """The feature maps ``[1, K, h, w]`` of layer ``name`` (read through the model's layout) and
    the input ``[1, F]`` of ``head``, for one seeded random image at the loader's input size
    (None when the model carries no metadata to probe it with)."""
    size = getattr(getattr(model, "bench_meta", None), "input_size", None)
    if size is None:
        return None
    seen: dict[str, Tensor] = {}
    layer = get_layer(model, name)
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: seen.setdefault("maps", out)),
        head.register_forward_pre_hook(lambda _m, args: seen.setdefault("features", args[0])),
    ]
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(image.to(module_device(model)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    maps, layout = seen.get("maps"), layout_of(model)
    if not isinstance(maps, Tensor) or "features" not in seen:
        return None
    maps = layout.to_maps(maps, size) if layout is not None else maps
    return (maps, seen["features"].flatten(1)) if maps.ndim == 4 else None
