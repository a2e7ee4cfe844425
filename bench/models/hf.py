"""Hugging Face image classifiers (optional: ``pip install transformers``): ``AutoModelForImageClassification``
from a local folder (``save_pretrained``) or built from a config class with random weights, offline.

The model is wrapped (:class:`HFClassifier`) so that it maps images to the logits of its output
object; its image processor gives the input size, mean and std; the CAM layer and the token
layout (class and distillation tokens of ViT and DeiT, the patch tokens of Swin) are derived from
the model. Nothing is read from the hub and no remote code runs (``local_files_only``,
``trust_remote_code=False``; weights only from ``safetensors`` files).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from bench.core.errors import ConfigError, check_int, choice_error, first_line
from bench.core.layers import FeatureLayout, is_feature_map, probe_outputs, token_grid
from bench.core.paths import existing_dir
from bench.models.meta import ModelKeys, count_classes, image_size, model_keys

#: The seed of a randomly initialised model (the same weights in every process).
INIT_SEED = 0
#: The Hugging Face config's ``problem_type`` of a sigmoid head.
MULTI_LABEL = "multi_label_classification"


class HFClassifier(nn.Module):
    """A Hugging Face image classifier as ``images [B, 3, H, W] -> logits [B, classes]``: the
    ``logits`` of its output object. The wrapped model is ``hf`` (module names ``hf.<...>``)."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, images: Tensor) -> Tensor:
        return self.hf(pixel_values=images).logits


def import_transformers():
    """The transformers package, or a ConfigError saying how to install it."""
    try:
        import transformers
    except ImportError as err:
        raise ConfigError(
            "model=hf needs the transformers package: pip install transformers (or pip install "
            '-e ".[hf]").'
        ) from err
    return transformers


def _types() -> dict:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    return dict(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)


def hf_config(config: str, overrides: Mapping | None = None, num_classes: int | None = None):
    """The config of model type ``config`` (``vit``, ``swin``, ``convnext``, ...: a key of
    transformers' image-classification mapping) with its defaults and ``overrides`` (keys checked
    against the config class's)."""
    transformers = import_transformers()
    types = _types()
    if config not in types:
        raise choice_error("model.config", config, types)
    cls = transformers.CONFIG_MAPPING[config]
    known = set(cls().to_dict())
    over = dict(overrides or {})
    for key in over:
        if key not in known and not hasattr(cls(), key):
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"model.overrides.{key} is not a key of {cls.__name__}.{hint} Accepted: its "
                f"keys, e.g. {', '.join(sorted(k for k in known if not k.startswith('_'))[:8])}."
            )
    if num_classes is not None:
        over["num_labels"] = check_int("model.num_classes", num_classes, minimum=1)
    classes = types[config]
    if not isinstance(classes, str) and "architectures" not in over:
        over["architectures"] = [classes[0]]  # DeiT: the plain head, not the teacher's
    try:
        return cls(**{k: (list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
                      for k, v in over.items()})  # fmt: skip
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.overrides={over}: {first_line(err)}") from err


def _processor(folder: Path | None, model_type: str):
    """The image processor saved in ``folder``, else the default one of ``model_type``."""
    from transformers import AutoImageProcessor
    from transformers.models.auto import image_processing_auto as ipa

    if folder is not None and (folder / "preprocessor_config.json").is_file():
        return AutoImageProcessor.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    names = ipa.IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if isinstance(names, Mapping):
        names = [names.get("pil"), names.get("torchvision")]
    found = [n for n in (names or []) if n]
    return ipa.get_image_processor_class_from_name(found[0])() if found else None


def _size(value: object) -> tuple[int, int] | None:
    """``(H, W)`` of a processor's size dict (height/width, else a square shortest edge)."""
    get = (lambda k: value.get(k)) if isinstance(value, Mapping) else (lambda k: getattr(value, k, None))  # fmt: skip
    if value is None:
        return None
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    edge = get("shortest_edge")
    return (int(edge), int(edge)) if edge else None


def hf_preprocessing(
    path: str | None = None,
    config: str | None = None,
    overrides: Mapping | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict:
    """What the model expects, from its image processor, without building it: ``input_size``
    (given; else the processor's crop or size for a folder; else the config's ``image_size``),
    ``mean``, ``std`` (given, else the processor's) and ``resize_size`` (the processor's size
    before its centre crop, where it crops)."""
    import_transformers()
    from transformers import AutoConfig

    folder = _folder(path, config)
    if folder is not None:
        model_cfg = AutoConfig.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    else:
        model_cfg = hf_config(config, overrides)
    proc = _processor(folder, model_cfg.model_type)
    crop = (
        _size(getattr(proc, "crop_size", None)) if getattr(proc, "do_center_crop", False) else None
    )
    own = getattr(model_cfg, "image_size", None)
    own = image_size(own) if isinstance(own, (int, list, tuple)) else None
    size = image_size(input_size) or (crop or _size(getattr(proc, "size", None)) if folder else own)
    size = size or own or _size(getattr(proc, "size", None))
    mean = mean if mean is not None else getattr(proc, "image_mean", None)
    std = std if std is not None else getattr(proc, "image_std", None)
    if size is None or mean is None or std is None:
        raise ConfigError(
            f"the Hugging Face model ({path or config}) has no image processor that states its "
            "input size, mean and std; set model.input_size, model.mean and model.std."
        )
    resize = None
    pct = getattr(proc, "crop_pct", None)
    if crop is not None:  # the processor's resize before its crop, scaled to this input
        resize = round(min(size) * min(_size(getattr(proc, "size", None)) or crop) / min(crop))
    elif pct:
        resize = int(min(size) / pct)
    return {"input_size": list(size), "mean": list(mean), "std": list(std), "resize_size": resize}


def _folder(path: str | None, config: str | None) -> Path | None:
    if (path is None) == (config is None):
        raise ConfigError(
            f"model.path={path} and model.config={config}; accepted: exactly one of them (a "
            "folder saved with save_pretrained, or a model type such as vit, swin, convnext)."
        )
    if path is None:
        return None
    folder = existing_dir(path, "model.path")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"model.path={path} has no config.json; accepted: a folder written by "
            "save_pretrained (config.json, model.safetensors, preprocessor_config.json)."
        )
    return folder


def _build(
    path: str | None, config: str | None, overrides: Mapping | None, num_classes: int | None
) -> nn.Module:
    """The Hugging Face model of the folder ``path`` (safetensors only), or of ``config`` with
    random weights seeded by :data:`INIT_SEED`."""
    from transformers import AutoModelForImageClassification

    folder = _folder(path, config)
    try:
        if folder is not None:
            return AutoModelForImageClassification.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True
            )
        cfg = hf_config(config, overrides, num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            return AutoModelForImageClassification.from_config(cfg, trust_remote_code=False)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"model.{'path' if folder else 'config'}={path or config}: {first_line(err)} "
            "(accepted: a folder saved with save_pretrained holding model.safetensors, or a model "
            "type of transformers' image-classification models)."
        ) from err


def hf_cam_layer(model: HFClassifier, size: tuple[int, int]) -> tuple[str | None, FeatureLayout]:
    """The CAM layer and layout of a Hugging Face classifier: a ViT / DeiT's last block's
    ``layernorm_before`` with its prefix tokens (tokens minus the patches of ``config.patch_size``),
    else the last module with patch tokens (Swin: prefix 0) or feature maps (ConvNeXt)."""
    outputs = [(n, o) for n, o in probe_outputs(model, size) if isinstance(o, Tensor)]
    patch = getattr(model.hf.config, "patch_size", None)
    norms = [(n, o) for n, o in outputs if n.endswith("layernorm_before") and o.ndim == 3]
    if isinstance(patch, int) and norms:
        name, out = norms[-1]
        prefix = out.shape[1] - (size[0] // patch) * (size[1] // patch)
        if prefix >= 1:
            return name, FeatureLayout("nchw", prefix)
    for name, out in reversed(outputs):
        if is_feature_map(out):
            return name, FeatureLayout("nchw", None)
        if out.ndim == 3 and out.shape[2] > 1 and token_grid(out.shape[1], 0, size):
            return name, FeatureLayout("nchw", 0)
    return None, FeatureLayout("nchw", None)


def load_hf(
    path: str | None = None,
    config: str | None = None,
    overrides: Mapping | None = None,
    **shared: Unpack[ModelKeys],
) -> nn.Module:
    """A Hugging Face image classifier (``pip install transformers``), in eval mode, with its metadata.

    Args:
        path: a local folder written by ``save_pretrained`` (config.json, model.safetensors and
            preprocessor_config.json); nothing is downloaded.
        config: instead of ``path``, a model type (``vit``, ``deit``, ``swin``, ``convnext``, ...)
            built from its config class's defaults and ``overrides``, with random weights (hub
            names cannot be resolved offline).
        overrides: keys of the config class (``{image_size: 32, hidden_size: 64}``).
        **shared: :class:`~bench.models.meta.ModelKeys`; ``num_classes`` is a built config's
            ``num_labels`` (checked for a folder); null ``input_size``, ``resize_size``, ``mean``
            and ``std`` are the image processor's (a built config: its ``image_size``);
            ``cam_layer: auto`` is :func:`hf_cam_layer` (module names ``hf.<...>``); ``name``
            defaults to the folder's name or the type; null ``probabilities`` (the default) is
            the config's ``problem_type`` (``multi_label_classification``: sigmoid).
    """
    keys = model_keys(load_hf, shared, probabilities=None)
    import_transformers()
    pre = hf_preprocessing(path, config, overrides, keys["input_size"], keys["mean"], keys["std"])
    model = HFClassifier(_build(path, config, overrides, keys["num_classes"])).eval()
    size = keys["input_size"] = image_size(pre["input_size"])
    try:
        counted = count_classes(
            model, size, keys["num_classes"] if path else None, "the Hugging Face model"
        )
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the model refuses the input size
        raise ConfigError(
            f"the Hugging Face model ({path or config}) fails on a {size[0]}x{size[1]} input: "
            f"{first_line(err)}; set model.input_size to the size it was built for."
        ) from err
    auto, layout = hf_cam_layer(model, size)
    hf_cfg = model.hf.config
    extra = {"source": str(Path(path).resolve()) if path else f"config:{config}",
             "model_type": hf_cfg.model_type, "class": type(model.hf).__name__,
             "resize_size": keys.resize_size(pre["resize_size"]),
             "init_seed": None if path else INIT_SEED}  # fmt: skip
    if keys["probabilities"] is None:
        multi = getattr(hf_cfg, "problem_type", None) == MULTI_LABEL
        keys["probabilities"] = "sigmoid" if multi else "softmax"
    if keys["cam_layer"] == "auto":
        keys["cam_layer"] = auto
    keys["name"] = keys["name"] or (Path(path).name if path else config)
    keys.update(num_classes=counted, mean=pre["mean"], std=pre["std"])
    return keys.attach(model, Path(path).name if path else "random", extra, layout)
