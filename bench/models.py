"""Models: loaders for the embedded CNNs, torchvision, timm and a user's own module.

Every loader returns the model in eval mode with its :class:`ModelMeta` attached as
``model.bench_meta`` (CAM layer, input size, normalisation, class count, weights' origin).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from bench import ROOT
from bench.errors import ConfigError, choice_error

log = logging.getLogger("bench.models")


@dataclass
class ModelMeta:
    """What the harness needs to know about a model (timm-style metadata carried by the model).

    Attributes:
        name: the config name (the ``model`` column of result rows).
        weights: where the weights came from (the ``weights`` column).
        cam_layer: the layer CAM-family methods use, by ``named_modules()`` name.
        input_size: ``(H, W)`` the model expects.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        num_classes: number of output logits.
        extra: anything else worth recording (checkpoint path, training record).
    """

    name: str
    weights: str
    cam_layer: str | None
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class ShapesCNN(nn.Module):
    """The embedded benchmark's classifier: a strided stem, three conv blocks, global average pooling, a linear head.

    ``features.3`` (the last conv block, a 14x14 grid at 112 px input) is its CAM layer; the
    pooling + linear head makes it CAM-compatible.
    """

    def __init__(self, num_classes: int = 8, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int, pool: bool, k: int = 3, stride: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
            layers = [conv, nn.BatchNorm2d(cout), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return nn.Sequential(*layers)

        w = width
        self.features = nn.Sequential(
            block(3, w, False, k=5, stride=2),
            block(w, 2 * w, True),
            block(2 * w, 4 * w, True),
            block(4 * w, 4 * w, False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def resolve_path(path: str | Path) -> Path:
    """A path as given if absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def read_checkpoint(path: str | Path, hint: str = "") -> dict:
    """Load a checkpoint file (a dict with ``state_dict`` or a bare state dict) onto the CPU."""
    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(
            f"model.checkpoint={path} not found (looked at {p}).{(' ' + hint) if hint else ''}"
        )
    obj = torch.load(p, map_location="cpu", weights_only=False)
    return obj


def load_shapes_cnn(
    checkpoint: str,
    name: str = "shapes_cnn",
    num_classes: int = 8,
    width: int = 16,
    cam_layer: str = "features.3",
    input_size: tuple[int, int] = (112, 112),
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> nn.Module:
    """The embedded benchmark's trained CNN from its committed checkpoint, in eval mode."""
    ckpt = read_checkpoint(
        checkpoint, hint="Train it with `make train` (python scripts/train_shapes.py)."
    )
    state = ckpt.get("state_dict", ckpt)
    model = ShapesCNN(num_classes=num_classes, width=width)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(
            f"model.checkpoint={checkpoint} does not fit ShapesCNN(width={width}): {first}"
        ) from err
    model.eval()
    model.bench_meta = ModelMeta(
        name=name,
        weights=Path(checkpoint).name,
        cam_layer=cam_layer,
        input_size=tuple(input_size),
        mean=tuple(mean),
        std=tuple(std),
        num_classes=num_classes,
        extra={k: v for k, v in ckpt.items() if k != "state_dict"} if "state_dict" in ckpt else {},
    )
    return model


def meta_of(model: nn.Module) -> ModelMeta:
    """The metadata attached by a loader; a ConfigError for a bare module."""
    meta = getattr(model, "bench_meta", None)
    if meta is None:
        raise ConfigError(
            f"model {type(model).__name__} carries no bench_meta; load it through a bench.models loader."
        )
    return meta


# --------------------------------------------------------------------------------------------
# Checkpoints in every accepted form


STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


def split_checkpoint(obj: object, path: str | Path) -> tuple[nn.Module | dict, dict]:
    """``(model or state dict, extra record)`` of a loaded checkpoint.

    Accepted forms: a pickled ``nn.Module`` (full model); a bare state dict (name -> tensor); a
    dict holding the state dict under one of ``STATE_KEYS`` beside other entries (the training
    record, kept as ``extra``).
    """
    if isinstance(obj, nn.Module):
        return obj, {}
    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, {}
        for key in STATE_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module) or (
                isinstance(inner, dict)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                extra = {
                    k: v
                    for k, v in obj.items()
                    if k != key and isinstance(v, (str, int, float, bool))
                }
                return inner, extra
    raise ConfigError(
        f"model.checkpoint={path} holds a {type(obj).__name__} that is neither a model nor a state "
        f"dict; accepted: a pickled nn.Module, a state dict, or a dict with the state dict under "
        f"one of {', '.join(STATE_KEYS)}."
    )


def strip_prefix_of(state: dict, prefix: str | None) -> dict:
    """``state`` with ``prefix`` removed from every key that starts with it (e.g. ``module.``)."""
    if not prefix:
        return state
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _common_prefix(keys: list[str]) -> str | None:
    first = {k.split(".", 1)[0] for k in keys if "." in k}
    if len(first) == 1 and all("." in k for k in keys):
        return first.pop() + "."
    return None


def load_state(model: nn.Module, state: dict, checkpoint: str | Path, what: str) -> None:
    """``model.load_state_dict(state)`` strictly, or a ConfigError that says what does not fit and how to fix it."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in state
        and hasattr(state[k], "shape")
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {'; '.join(shapes[:2])}")
    hints = []
    prefix = _common_prefix(list(state))
    if prefix and unexpected and not _common_prefix(list(own)) == prefix:
        hints.append(
            f"the checkpoint's keys start with '{prefix}': set model.strip_prefix={prefix}"
        )
    if shapes:
        hints.append(
            "a checkpoint fine-tuned for another number of classes needs model.num_classes=<its count>"
        )
    raise ConfigError(
        f"model.checkpoint={checkpoint} does not fit {what}: {'; '.join(parts)}."
        + (f" Hint: {'; '.join(hints)}." if hints else "")
    )


def _count_classes(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Number of logits of ``model`` from one forward pass of a zero image (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *input_size))
    finally:
        model.train(was_training)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ConfigError(
            f"the model returns {getattr(out, 'shape', type(out).__name__)} for a [1, 3, {input_size[0]}, "
            f"{input_size[1]}] input; a classifier must return logits [B, num_classes]."
        )
    return int(out.shape[1])


def auto_cam_layer(model: nn.Module, input_size: tuple[int, int]) -> str:
    """The last module (in completion order) whose output is a spatial map ``[B, K, h, w]`` with ``h*w > 1``.

    For ResNets this is ``layer4``; the model configs state their layers explicitly, this is the
    fallback for ``cam_layer: auto``.
    """
    found: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: tuple, out: object, name: str = name) -> None:
            if (
                isinstance(out, torch.Tensor)
                and out.ndim == 4
                and out.shape[-1] * out.shape[-2] > 1
            ):
                found.append(name)

        handles.append(module.register_forward_hook(hook))
    try:
        _count_classes(model, input_size)
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise ConfigError(
            f"model {type(model).__name__} has no layer with a [B, K, h, w] output; set model.cam_layer "
            "to a module name (or null: CAM methods will then be refused)."
        )
    return found[-1]


def _check_layer(model: nn.Module, layer: str | None, input_size: tuple[int, int]) -> str | None:
    if layer is None:
        return None
    if layer == "auto":
        return auto_cam_layer(model, input_size)
    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=3)
        raise ConfigError(
            f"model.cam_layer={layer} is not a module of {type(model).__name__}."
            + (
                f" Did you mean {', '.join(close)}?"
                if close
                else f" Its last modules: {', '.join(names[-3:])}."
            )
            + " Accepted: a name from model.named_modules(), auto, or null."
        )
    return layer


def attach_meta(
    model: nn.Module,
    name: str,
    weights: str,
    cam_layer: str | None,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    extra: dict,
) -> nn.Module:
    """Put the model in eval mode and attach its :class:`ModelMeta` (CAM layer checked)."""
    model.eval()
    model.bench_meta = ModelMeta(
        name=name,
        weights=weights,
        cam_layer=_check_layer(model, cam_layer, input_size),
        input_size=input_size,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        num_classes=num_classes,
        extra=extra,
    )
    return model


def _size(value: Sequence[int] | int | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    vals = [int(v) for v in value]
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


# --------------------------------------------------------------------------------------------
# torchvision


def _tv_weights(arch: str, weights: str | None):
    """The torchvision weights enum member ``weights`` of ``arch`` (None for random), with checks."""
    from torchvision.models import get_model_weights, list_models

    models = list_models(module=torchvision.models)
    if arch not in models:
        raise choice_error("model.arch", arch, models)
    if weights is None:
        return None
    enum = get_model_weights(arch)
    if weights == "DEFAULT":
        return enum.DEFAULT
    names = [w.name for w in enum]
    if weights not in names:
        raise choice_error(f"model.weights (for {arch})", weights, [*names, "DEFAULT", "null"])
    return enum[weights]


def torchvision_weights_file(arch: str, weights: str = "DEFAULT") -> Path:
    """Where torchvision caches (and looks for) the weights file: ``torch.hub.get_dir()/checkpoints/<file>``."""
    w = _tv_weights(arch, weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path)


def _metadata(w) -> dict:
    """Input size, resize size, interpolation, mean, std and class count from a weights enum member."""
    t = w.transforms()
    return {
        "input_size": _size(list(t.crop_size)),
        "resize_size": int(t.resize_size[0]) if getattr(t, "resize_size", None) else None,
        "interpolation": str(getattr(t.interpolation, "value", t.interpolation)),
        "mean": tuple(float(v) for v in t.mean),
        "std": tuple(float(v) for v in t.std),
        "num_classes": len(w.meta.get("categories") or []) or None,
    }


def load_torchvision(
    arch: str,
    weights: str | None = "DEFAULT",
    checkpoint: str | None = None,
    strip_prefix: str | None = None,
    num_classes: int | None = None,
    cam_layer: str | None = "auto",
    input_size: Sequence[int] | None = None,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
    download: bool = True,
    kwargs: dict | None = None,
) -> nn.Module:
    """Any torchvision classification model by name, with its weights and metadata, in eval mode.

    Args:
        arch: the torchvision builder name (``resnet50``, ``vit_b_16``, ... ``torchvision.models.list_models()``).
        weights: a member of the architecture's weights enum (``DEFAULT``, ``IMAGENET1K_V2``, ...),
            used when cached in ``torch.hub.get_dir()/checkpoints`` or downloadable; ``null`` for
            random initialisation (throughput and sanity work) or when ``checkpoint`` is given.
        checkpoint: a local file: a pickled model, a state dict, or a dict holding one.
        strip_prefix: removed from the checkpoint's keys (``module.`` for DataParallel saves).
        num_classes: logits of the head (default: the weights' category count, else 1000).
        cam_layer: module name for CAM methods, ``auto`` (last spatial map) or null.
        input_size: ``(H, W)``; default from the weights' transforms (the DEFAULT weights' when random).
        resize_size: shorter-side resize before the centre crop (ImageNet protocol); default likewise.
        mean: normalisation mean; default likewise.
        std: normalisation std; default likewise.
        name: the ``model`` column of result rows (default: ``arch``).
        download: try to download missing enum weights (never in tests).
        kwargs: extra builder arguments (e.g. ``{dropout: 0.0}``).
    """
    from torchvision.models import get_model, get_model_weights

    w = _tv_weights(arch, weights)
    if w is not None and checkpoint:
        raise ConfigError(
            f"model.weights={weights} and model.checkpoint={checkpoint} are both set; accepted: one "
            "of them (set model.weights=null to load the checkpoint)."
        )
    try:
        ref = w or get_model_weights(arch).DEFAULT
        meta = _metadata(ref)
    except (ValueError, AttributeError, KeyError):
        ref, meta = None, {}
    input_size = _size(input_size) or meta.get("input_size")
    mean = tuple(mean) if mean is not None else meta.get("mean")
    std = tuple(std) if std is not None else meta.get("std")
    if input_size is None or mean is None or std is None:
        raise ConfigError(
            f"torchvision model {arch} has no weights metadata; set model.input_size, model.mean and model.std."
        )
    for key, given in (("input_size", input_size), ("mean", mean), ("std", std)):
        if meta.get(key) is not None and w is not None and tuple(given) != tuple(meta[key]):
            log.warning(
                "model.%s=%s differs from the %s weights' %s", key, list(given), w, list(meta[key])
            )
    if (
        w is not None
        and num_classes is not None
        and meta.get("num_classes") not in (None, num_classes)
    ):
        raise ConfigError(
            f"model.num_classes={num_classes} but weights {w} have {meta['num_classes']} classes; "
            "for a fine-tuned head set model.weights=null and model.checkpoint=<your file>."
        )
    kwargs = dict(kwargs or {})
    extra: dict = {
        "arch": arch,
        "resize_size": resize_size or meta.get("resize_size"),
        "interpolation": meta.get("interpolation"),
    }
    if w is not None:
        path = torchvision_weights_file(arch, w.name)
        if not path.is_file() and not download:
            raise ConfigError(
                f"model.weights={w} for {arch} is not cached: looked for {path}. Provide it by copying "
                f"{path.name} (from {w.url}) there, by pointing TORCH_HOME at a folder whose "
                f"hub/checkpoints holds it, or by model.checkpoint=<file> model.weights=null; or allow "
                "model.download=true on a machine with internet access."
            )
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)
        try:
            model = get_model(arch, weights=w, **kwargs)
        except Exception as err:  # noqa: BLE001 - any download failure becomes one clear line
            raise ConfigError(
                f"model.weights={w} for {arch}: could not load {path} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). Provide the file by copying "
                f"{path.name} (from {w.url}) to {path.parent}, by TORCH_HOME=<folder holding "
                "hub/checkpoints>, or by model.checkpoint=<file> model.weights=null."
            ) from err
        finally:
            socket.setdefaulttimeout(previous)
        weights_name = w.name
        extra["weights_file"] = str(path)
    elif checkpoint:
        obj, extra_ck = split_checkpoint(read_checkpoint(checkpoint), checkpoint)
        extra.update(extra_ck)
        extra["checkpoint"] = str(resolve_path(checkpoint))
        if isinstance(obj, nn.Module):
            model = obj
        else:
            model = get_model(arch, weights=None, num_classes=num_classes or 1000, **kwargs)
            load_state(
                model,
                strip_prefix_of(obj, strip_prefix),
                checkpoint,
                f"{arch}(num_classes={num_classes or 1000})",
            )
        weights_name = Path(checkpoint).name
    else:
        model = get_model(
            arch, weights=None, num_classes=num_classes or meta.get("num_classes") or 1000, **kwargs
        )
        weights_name = "random"
        head = getattr(getattr(model, "heads", None), "head", None)
        if isinstance(head, nn.Linear):
            # torchvision zero-initialises the ViT head: random weights would give constant
            # outputs and zero gradients, useless for throughput and sanity work
            head.reset_parameters()
    model.eval()
    counted = _count_classes(model, input_size)
    if num_classes is not None and counted != num_classes:
        raise ConfigError(
            f"model.num_classes={num_classes} but the loaded {arch} returns {counted} logits; "
            f"set model.num_classes={counted} or load a matching checkpoint."
        )
    if arch.startswith(("vit_", "swin_", "maxvit")) and cam_layer and cam_layer != "auto":
        extra["cam_reshape"] = "tokens" if arch.startswith("vit_") else "channels_last"
    return attach_meta(
        model, name or arch, weights_name, cam_layer, input_size, mean, std, counted, extra
    )


# --------------------------------------------------------------------------------------------
# A user's own nn.Module


def import_object(path: str) -> object:
    """The object at ``package.module.Name`` (or ``package.module:Name``)."""
    mod_name, _, attr = path.replace(":", ".").rpartition(".")
    if not mod_name:
        raise ConfigError(
            f"model.module={path} is not an import path; accepted: package.module.ClassName."
        )
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise ConfigError(
            f"model.module={path}: cannot import {mod_name} ({err}); is it on PYTHONPATH?"
        ) from err
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=3)
        raise ConfigError(
            f"model.module={path}: {mod_name} has no {attr}."
            + (f" Did you mean {', '.join(close)}?" if close else "")
        )
    return getattr(module, attr)


def load_module(
    module: str,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    checkpoint: str | None = None,
    strip_prefix: str | None = None,
    args: dict | None = None,
    num_classes: int | None = None,
    cam_layer: str | None = "auto",
    name: str = "custom",
) -> nn.Module:
    """A user's own ``nn.Module`` by import path, with weights from a local checkpoint (or random).

    Args:
        module: import path of the class or factory (``my_pkg.nets.Net``), called with ``args``.
        input_size: ``(H, W)`` the model expects.
        mean: normalisation mean the model was trained with (no default: nothing implicit).
        std: normalisation std.
        checkpoint: a pickled model, a state dict, or a dict holding one; null = random weights.
        strip_prefix: removed from the checkpoint's keys.
        args: keyword arguments of the constructor.
        num_classes: expected number of logits (checked by one forward pass); null = as found.
        cam_layer: module name for CAM methods, ``auto`` or null.
        name: the ``model`` column of result rows.
    """
    input_size = _size(input_size)
    extra: dict = {"module": module}
    model: nn.Module | None = None
    state = None
    if checkpoint:
        obj, extra_ck = split_checkpoint(read_checkpoint(checkpoint), checkpoint)
        extra.update(extra_ck)
        extra["checkpoint"] = str(resolve_path(checkpoint))
        if isinstance(obj, nn.Module):
            model = obj
        else:
            state = strip_prefix_of(obj, strip_prefix)
    if model is None:
        factory = import_object(module)
        try:
            model = factory(**(args or {}))
        except TypeError as err:
            raise ConfigError(
                f"model.module={module} with model.args={dict(args or {})}: {err}"
            ) from err
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"model.module={module} returned a {type(model).__name__}, not an nn.Module."
            )
        if state is not None:
            load_state(model, state, checkpoint, module)
    model.eval()
    counted = _count_classes(model, input_size)
    if num_classes is not None and counted != num_classes:
        raise ConfigError(
            f"model.num_classes={num_classes} but {module} returns {counted} logits; set "
            f"model.num_classes={counted} or load a matching checkpoint."
        )
    weights = Path(checkpoint).name if checkpoint else "random"
    return attach_meta(model, name, weights, cam_layer, input_size, mean, std, counted, extra)


# --------------------------------------------------------------------------------------------
# timm (optional)


def load_timm(
    arch: str,
    pretrained: bool = False,
    checkpoint: str | None = None,
    strip_prefix: str | None = None,
    num_classes: int | None = None,
    cam_layer: str | None = "auto",
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
) -> nn.Module:
    """A timm model by name (``pip install timm``); metadata from its ``pretrained_cfg``.

    Pretrained weights come from timm's own cache (Hugging Face hub); a local ``checkpoint``
    (state dict or pickled model) is loaded after creation.
    """
    try:
        import timm
    except ImportError as err:
        raise ConfigError("model=timm needs the timm package: pip install timm.") from err
    if arch not in timm.list_models(pretrained=False):
        raise choice_error("model.arch", arch, timm.list_models(pretrained=False))
    kw = {} if num_classes is None else {"num_classes": num_classes}
    try:
        model = timm.create_model(arch, pretrained=pretrained, **kw)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"timm model {arch} (pretrained={pretrained}): {type(err).__name__}: {err}. Provide the "
            "weights in the Hugging Face cache (HF_HOME) or as model.checkpoint=<file> model.pretrained=false."
        ) from err
    weights_name = "pretrained" if pretrained else "random"
    extra: dict = {"arch": arch}
    if checkpoint:
        obj, extra_ck = split_checkpoint(read_checkpoint(checkpoint), checkpoint)
        extra.update(extra_ck)
        if isinstance(obj, nn.Module):
            model = obj
        else:
            load_state(model, strip_prefix_of(obj, strip_prefix), checkpoint, arch)
        weights_name = Path(checkpoint).name
    cfg = getattr(model, "pretrained_cfg", None) or {}
    input_size = _size(input_size) or _size(list(cfg.get("input_size", (3, 224, 224)))[1:])
    mean = tuple(mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(std if std is not None else cfg.get("std", (0.229, 0.224, 0.225)))
    model.eval()
    counted = _count_classes(model, input_size)
    return attach_meta(
        model, name or arch, weights_name, cam_layer, input_size, mean, std, counted, extra
    )
