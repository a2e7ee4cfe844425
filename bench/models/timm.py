"""timm models by name (optional: ``pip install timm``), with metadata from their ``pretrained_cfg``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from bench.core.checkpoints import load_weights, weights_only_loads
from bench.core.errors import ConfigError, check_bool, check_int, choice_error
from bench.models.meta import attach_meta, count_classes, image_size


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
    trust_checkpoint: bool = False,
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
    kw = (
        {}
        if num_classes is None
        else {"num_classes": check_int("model.num_classes", num_classes, minimum=1)}
    )
    try:
        with weights_only_loads():  # the hub cache may be shared: tensors only
            model = timm.create_model(arch, pretrained=pretrained, **kw)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"timm model {arch} (pretrained={pretrained}): {type(err).__name__}: {err}. Provide the "
            "weights in the Hugging Face cache (HF_HOME) or as model.checkpoint=<file> model.pretrained=false."
        ) from err
    weights_name = "pretrained" if pretrained else "random"
    extra: dict = {"arch": arch}
    if checkpoint:
        created = model
        model, record = load_weights(
            checkpoint,
            lambda: created,
            arch,
            strip_prefix,
            trust=check_bool("model.trust_checkpoint", trust_checkpoint),
        )
        extra.update(record)
        weights_name = Path(checkpoint).name
    cfg = getattr(model, "pretrained_cfg", None) or {}
    input_size = image_size(input_size) or image_size(
        list(cfg.get("input_size", (3, 224, 224)))[1:]
    )
    mean = tuple(mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(std if std is not None else cfg.get("std", (0.229, 0.224, 0.225)))
    counted = count_classes(model, input_size, num_classes, arch)
    return attach_meta(
        model, name or arch, weights_name, cam_layer, input_size, mean, std, counted, extra
    )
