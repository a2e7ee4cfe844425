"""Building a job's cell from its config: the model, the data, the method and the metrics,
instantiated and checked against each other before any compute (every check that can fail does
so here), with the record's description of what was built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import Dataset

from bench.config.validate import construct_node
from bench.core.context import Context, memory_bytes
from bench.core.errors import ConfigError
from bench.core.paths import CONF_DIR
from bench.data.base import ImageDataset
from bench.data.subset import SUBSET_KEYS, select
from bench.engine.cache import MapCache, job_spec
from bench.engine.record import DatasetInfo, MethodInfo, MetricInfo, Record
from bench.engine.timing import Timer
from bench.metrics.base import Metric
from bench.models import ModelMeta, meta_of


def build_dataset(cfg: DictConfig, seed: int) -> tuple[ImageDataset, Dataset, dict]:
    """Instantiate ``cfg.dataset`` without its subset keys, then select the job's items."""
    node = OmegaConf.to_container(cfg, resolve=True)
    subset = {k: node.pop(k) for k in SUBSET_KEYS if k in node}
    dataset = instantiate(node)
    return dataset, select(dataset, seed=seed, **subset), subset


@dataclass
class Cell:
    """Everything one scoring of a method (or of given maps) uses, built and checked before any
    compute: by :func:`build` for a job, by ``bench.api.evaluate`` for tensors."""

    model: nn.Module
    method: Callable[[nn.Module, Tensor, Tensor], Tensor]
    method_name: str
    metrics: dict[str, Metric]
    ctx: Context
    row_meta: dict[str, str] = field(default_factory=dict)
    cache: MapCache = field(default_factory=lambda: MapCache(".", mode="off"))
    meta: ModelMeta | None = None
    base: ImageDataset | None = None
    dataset: Dataset | None = None


def check_metric(name: str, metric: Metric, input_size: tuple[int, int]) -> Metric:
    """``metric`` if its settings make sense on ``input_size`` inputs
    (:meth:`bench.metrics.base.Metric.check_image`), else a ConfigError naming ``metric.<name>``."""
    try:
        metric.check_image(*input_size)
    except ConfigError as err:
        raise ConfigError(f"metric.{name}.{err}") from err
    return metric


def make_cell(
    model: nn.Module,
    method: Any,
    method_name: str,
    metrics: dict[str, Metric],
    row_meta: dict[str, str],
    **context: Any,
) -> Cell:
    """The cell of ``method`` (checked against ``model``: what it needs, e.g. a convolution) and
    ``metrics`` on ``model``, with its :class:`~bench.core.context.Context` (``context``: the
    Context's keyword arguments: device, chunk size, precision, seed, ...); the rows are labelled
    ``row_meta`` plus the method's name. The one builder of a job's cell and ``evaluate``'s."""
    if hasattr(method, "check"):
        method.check(model)
    ctx = Context(model=model, method=method, **context)
    for name, metric in metrics.items():
        why = metric.unfit_head(ctx.probabilities)
        if why is not None:
            raise ConfigError(f"metric={name} ({type(metric).__name__}) cannot score model "
                              f"{row_meta.get('model', type(model).__name__)}: {why}")  # fmt: skip
    return Cell(model, method, method_name, metrics, ctx, {**row_meta, "method": method_name})


def method_label(cfg: DictConfig) -> str:
    """The method's config name: Hydra's choice under the CLI; composed in-process (bench.api),
    the one ``conf/method`` file whose ``_target_`` is the method's, else the class name."""
    if HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("method"):
        return HydraConfig.get().runtime.choices["method"]
    target = str(cfg.method.get("_target_", "method"))
    names = [
        p.stem
        for p in sorted((CONF_DIR / "method").glob("*.yaml"))
        if not p.stem.startswith("_") and f"_target_: {target}\n" in p.read_text()
    ]
    cls = target.rsplit(".", 1)[-1]
    if len(names) > 1 and cls.lower() in names:  # several configs of one class: the plain one
        return cls.lower()
    return names[0] if len(names) == 1 else cls


def resolve_model_node(cfg: DictConfig, meta: ModelMeta) -> None:
    """Write what the model's loader found back into ``cfg.model``: ``cam_layer: auto`` becomes the
    layer it chose, ``num_classes: null`` the logits it counted and a null ``input_size``, ``mean``,
    ``std``, ``resize_size`` the model's own (timm, Hugging Face), so every ``${model.*}``
    interpolation (the CAM methods' ``layer``, the datasets' class counts and preprocessing) sees
    the same values."""
    node = cfg.model
    if node.get("cam_layer") == "auto":
        node.cam_layer = meta.cam_layer
    found = {
        "num_classes": meta.num_classes,
        "input_size": list(meta.input_size),
        "mean": list(meta.mean),
        "std": list(meta.std),
        "resize_size": meta.extra.get("resize_size"),
    }
    for key, value in found.items():
        if key in node and node[key] is None:
            node[key] = value


def dataset_info(base: ImageDataset, dataset: Dataset, subset: dict) -> DatasetInfo:
    """The record's ``dataset``: the dataset, the items selected and the unreadable files skipped."""
    return DatasetInfo(
        name=base.name,
        split=base.split,
        size=len(base),
        num_classes=base.num_classes,
        classes=len(base.class_names),  # the dataset's own classes (per-class means)
        selected=len(dataset),
        subset=dict(subset),
        skipped=list(getattr(dataset, "skipped", [])),  # unreadable files (on_bad_sample)
        class_mapping=getattr(base, "class_indices", None),
        resize=getattr(getattr(base, "preprocess", None), "resize", None),
    )


def build_metrics(cfg: DictConfig, base: ImageDataset, meta: ModelMeta) -> dict[str, Metric]:
    """Construct ``cfg.metric``'s metrics, each checked against the dataset's fields and the
    model's input size."""
    metrics: dict[str, Metric] = {}
    for name, mcfg in (cfg.metric or {}).items():
        metric = construct_node(f"metric.{name}", mcfg)
        try:
            base.require(metric.requires, f"metric={name}")
        except ConfigError as err:
            if (
                "masks" in metric.requires
                and "boxes" in base.fields
                and "region" in metric.settings()
            ):
                raise ConfigError(
                    f"{err} Score it on the boxes instead (metric.{name}.region=boxes), or give "
                    "the dataset masks (dataset=folder: a mask column in the labels CSV)."
                ) from err
            raise
        metrics[name] = check_metric(name, metric, meta.input_size)
    return metrics


def metric_infos(metrics: dict[str, Metric], model: nn.Module) -> dict[str, MetricInfo]:
    """The record's ``metrics``: each metric's class, declared metadata, settings and the x axis
    of its curves where it has one (e.g. the randomised layers)."""
    out = {}
    for name, metric in metrics.items():
        info = MetricInfo.of(type(metric).__name__, metric.meta(), metric.settings())
        labels = metric.curve_labels(model)
        if labels is not None:
            info.curve_x = list(labels)
        out[name] = info
    return out


def _load_model(cfg: DictConfig, device: torch.device, timer: Timer) -> tuple[nn.Module, ModelMeta]:
    with timer("load_model"):
        model = instantiate(cfg.model).to(device).eval()
        meta = meta_of(model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
    resolve_model_node(cfg, meta)
    return model, meta


def build(
    cfg: DictConfig,
    device: torch.device,
    timer: Timer,
    record: Record,
    cell_hooks: list | None = None,
) -> Cell:
    """Instantiate the model, data, method and metrics of ``cfg`` and check that they fit together;
    fills ``record`` with what was built and ``cell_hooks`` with the hooks to remove when the job
    ends (the pass counter on the model)."""
    cell_hooks = [] if cell_hooks is None else cell_hooks
    model, meta = _load_model(cfg, device, timer)
    record.config = OmegaConf.to_container(cfg, resolve=True)
    with timer("load_data"):
        base, dataset, subset = build_dataset(cfg.dataset, cfg.seed)
    record.model = meta.to_dict()
    record.dataset = dataset_info(base, dataset, subset)
    if base.num_classes and base.num_classes != meta.num_classes:
        raise ConfigError(
            f"model={meta.name} has {meta.num_classes} classes but dataset={base.name} has "
            f"{base.num_classes}; set the dataset's class mapping or choose a matching model."
        )
    method_name = method_label(cfg)
    method = construct_node("method", cfg.method)
    method.check(model)  # before the metrics: an unfit method is the first thing to say
    metrics = build_metrics(cfg, base, meta)
    settings = OmegaConf.to_container(cfg.method, resolve=True)
    record.method = MethodInfo(name=method_name, cls=type(method).__name__, settings=settings)
    record.metrics = metric_infos(metrics, model)
    row_meta = {
        "model": meta.name,
        "weights": meta.weights,
        "dataset": base.name,
        "split": base.split,
    }
    cell = make_cell(
        model,
        method,
        method_name,
        metrics,
        row_meta,
        device=device,
        chunk_size=cfg.chunk_size,
        precision=cfg.precision,
        seed=cfg.seed,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        max_memory=memory_bytes(cfg.max_memory),
        counter=timer.passes,
    )
    cell.meta, cell.base, cell.dataset = meta, base, dataset
    cell_hooks.append(timer.passes.attach(model))  # every pass through the model, counted
    cell.cache = MapCache(cfg.paths.cache_root, cfg.cache, cfg.cache_dtype)
    if cell.cache.enabled:
        with timer("cache_key"):  # the weights' checksum: once per job
            cell.cache.start(job_spec(cfg, model, record.model, device))
    return cell
