"""Score attribution methods (or maps of your own) from Python, without Hydra or a run folder.

    from bench.engine.evaluate import evaluate
    df = evaluate(model, images, labels, methods=["gradcam"], metrics=["deletion", "pointing_game"],
                  boxes=boxes)

:func:`evaluate` returns the rows a run writes to ``scores.csv`` (:data:`bench.engine.io.ROW_COLUMNS`),
computed the way a run computes them: the method and metric configs are the same files
(``conf/method/<name>.yaml``, ``conf/metric/<name>.yaml``, composed by :func:`bench.api.compose`),
built by the same :func:`bench.config.validate.construct_node`, assembled into a cell by the same
:func:`bench.engine.build.make_cell`, and every batch goes through the same loop as a job
(:func:`bench.engine.score.score_batch`: map checks, row format). On the same images, labels,
boxes and settings it gives the same values as a run.

Every bad argument (an unknown method or metric, an array of the wrong shape, one label too
few) raises a :class:`~bench.core.errors.ConfigError` of one line naming the value and what is
accepted, before any attribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, MissingMandatoryValue, OmegaConfBaseException
from torch import Tensor, nn

from bench.config.compose import compose
from bench.config.validate import EXPLAIN, check_node_keys, construct_node, user_error
from bench.core.batch import Batch
from bench.core.context import resolve_device
from bench.core.errors import ConfigError, check_choice, check_int
from bench.core.layers import get_layer, last_feature_map_layer, module_device
from bench.engine.arguments import MAPS_NAME as MAPS_NAME
from bench.engine.arguments import check_images, check_samples, check_scored, per_name
from bench.engine.build import Cell, check_metric, make_cell
from bench.engine.io import ROW_COLUMNS
from bench.engine.score import score_batch
from bench.metrics.base import Metric

__all__ = ["evaluate"]

_MISSING = "???"


# -- configs ---------------------------------------------------------------------------------


def _refs(node: Any) -> set[str]:
    """Every ``${...}`` interpolation in a plain container."""
    out: set[str] = set()
    if isinstance(node, dict):
        for v in node.values():
            out |= _refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= _refs(v)
    elif isinstance(node, str) and "${" in node:
        out.add(node)
    return out


def _build(key: str, label: str, raw: dict, overrides: dict, values: dict[str, Any]) -> Any:
    """The object of the config ``raw`` of ``label`` (``metric=deletion``; unresolved, from
    ``conf/``) with ``overrides`` (named ``key`` in errors), its ``${model.*}``, ``${dataset.*}`` and ``${seed}`` set from ``values``."""
    root = OmegaConf.create({**values, "node": raw})
    node = root.node
    if overrides:
        node.merge_with(OmegaConf.create(overrides))
    check_node_keys(key, node)
    refs = _refs(OmegaConf.to_container(node, resolve=False))
    if _MISSING in (values["model"]["mean"], values["model"]["std"]) and any(
        f"model.{k}" in r for r in refs for k in ("mean", "std")
    ):
        raise ConfigError(
            f"{label} needs the images' normalisation (its config reads "
            "model.mean and model.std), which the model does not carry; pass mean=[r, g, b] and "
            "std=[r, g, b]."
        )
    try:
        OmegaConf.resolve(root)
    except MissingMandatoryValue as err:
        raise ConfigError(f"{key}: {str(err).splitlines()[0]}; pass that value.") from None
    except InterpolationKeyError as err:
        raise ConfigError(
            f"{key} refers to a value evaluate() does not provide ({str(err).splitlines()[0]}); "
            f"set that key with {key.split('[')[0]}."
        ) from None
    except OmegaConfBaseException as err:
        raise user_error(err) or ConfigError(f"{key}: {err}") from None
    return construct_node(key, root.node)


def _choices(metrics: list[str], methods: list[str]) -> tuple[dict[str, DictConfig], DictConfig]:
    """Unresolved ``method`` nodes (by name) and the ``metric`` node, from the config tree."""
    metric = f"metric=[{','.join(metrics)}]"
    first = methods[0] if methods else "gradcam"
    cfg = compose(f"method={first}", metric, resolve=False)
    nodes = {first: cfg.method} if methods else {}
    for name in methods[1:]:
        nodes[name] = compose(f"method={name}", metric, resolve=False).method
    return nodes, cfg.metric


# -- the model -------------------------------------------------------------------------------


def _cam_layer(model: nn.Module, given: str | None, input_size: tuple[int, int]) -> str | None:
    """``cam_layer=``, else the one the model's loader chose, else ``cam_layer: auto``'s rule
    (the last module with a spatial output, :func:`bench.core.layers.last_feature_map_layer`)."""
    if given is not None:
        get_layer(model, given, key="cam_layer")
        return given
    meta = getattr(model, "bench_meta", None)
    if meta is not None and meta.cam_layer:
        return meta.cam_layer
    layer = last_feature_map_layer(model, input_size)
    if layer is None:
        raise ConfigError(
            f"model {type(model).__name__} has no layer with a [B, K, h, w] output for the CAM "
            "methods; pass cam_layer=<module name> (from model.named_modules())."
        )
    return layer


def _normalisation(key: str, value: Any, meta_value: Any) -> list[float] | str:
    v = value if value is not None else meta_value
    if v is None:
        return _MISSING
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        out = []
    if len(out) != 3:
        raise ConfigError(f"{key}={v!r} is not valid; accepted: three numbers (one per channel).")
    return out


# -- the API ---------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    images: Tensor | np.ndarray,
    labels: Sequence[int] | Tensor | np.ndarray,
    maps: Tensor | np.ndarray | Mapping[str, Tensor | np.ndarray] | None = None,
    methods: str | Sequence[str] | None = None,
    metrics: str | Sequence[str] = ("deletion", "insertion"),
    *,
    boxes: Any = None,
    masks: Any = None,
    partners: Any = None,
    partner_masks: Any = None,
    ids: Sequence[str] | None = None,
    orig_sizes: Any = None,
    difficult: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cam_layer: str | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    chunk_size: int | str = "auto",
    precision: str = "fp32",
    explain: str = "label",
    method_args: Mapping[str, Any] | None = None,
    metric_args: Mapping[str, Any] | None = None,
    seed: int = 0,
    model_name: str | None = None,
    weights: str | None = None,
    dataset: str = "user",
    split: str = "",
) -> pd.DataFrame:
    """Score ``methods`` (and/or precomputed ``maps``) on ``images`` with ``metrics``: the rows a
    run writes (:data:`bench.engine.io.ROW_COLUMNS`), one per (image, method, metric score), in a
    run's order (batch by batch, method by method), as a DataFrame. A bad argument raises a
    ``ConfigError`` (one line naming it and what is accepted) before any compute.

    Args:
        model: a classifier returning logits ``[B, C]``; put in eval mode and moved to ``device``
            for the call (its train/eval mode is restored after). A model from a
            ``bench.models`` loader also gives its name, weights, CAM layer and normalisation.
        images: float ``[N, 3, H, W]``, **already normalised for the model** (what it is fed);
            metrics perturb in that space (``substrate: zero`` is the mean colour).
        labels: ``N`` class indices: the classes explained (``explain="label"``) and scored.
        maps: your own maps to score: ``[N, H, W]`` (rows named ``maps``) or a dict
            ``name -> [N, H, W]`` (rows named by the keys); scored like a method's maps.
        methods: names of ``conf/method/`` (``"gradcam"``, ``["gradient", "rise"]``).
        metrics: names of ``conf/metric/``.
        boxes, masks, partners, partner_masks, ids, orig_sizes, difficult: what the images hold,
            for the metrics that need it (boxes or masks: localisation; partners and their masks:
            ``class_sensitivity``), and the ``image_id`` column: as
            :func:`bench.engine.arguments.check_samples` takes them.
        mean, std: the per-channel normalisation of ``images`` (metrics that impute in pixel
            space, the ROAD family, need it); default: the model's ``bench_meta``.
        cam_layer: the CAM methods' layer; default: the model's ``bench_meta.cam_layer``, else
            the last module with a spatial output (``cam_layer: auto``).
        device, batch_size, chunk_size, precision, explain, seed: as the run's top-level keys
            (``conf/config.yaml``).
        method_args, metric_args: config keys to override, ``{name: {key: value}}`` (or, with
            one method / metric, ``{key: value}``), e.g. ``{"integrated_gradients": {"n_steps": 8}}``.
        model_name, weights, dataset, split: the rows' labels (default: see :func:`_row_labels`).
    """
    x = check_images(images)
    n, _, h, w = x.shape
    method_names, metric_names, own_maps = check_scored(methods, metrics, maps, n, h, w)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_choice("explain", explain, EXPLAIN)
    check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    dev = resolve_device(device)
    num_classes = _num_classes(model, x)
    samples = check_samples(
        x, num_classes, labels, ids, orig_sizes, boxes, masks, partners, partner_masks, difficult
    )
    values = _values(model, method_names, metric_names, method_args, metric_args, seed,
                      cam_layer, mean, std, num_classes, (h, w))  # fmt: skip
    built_metrics = _metrics(metric_names, values, samples.fields(), (h, w))
    row_meta = _row_labels(model, model_name, weights, dataset, split)
    rows = _run(model, dev, _jobs(method_names, values, own_maps), built_metrics, row_meta,
                samples.batches(batch_size), chunk_size=chunk_size, precision=precision, seed=seed,
                explain=explain)  # fmt: skip
    return pd.DataFrame(rows, columns=ROW_COLUMNS).astype({"target": int, "value": float})


def _row_labels(
    model: nn.Module, model_name: str | None, weights: str | None, dataset: str, split: str
) -> dict[str, str]:
    """The ``model, weights, dataset, split`` columns: those given, else the model's
    ``bench_meta`` name and weights, else its class name and ``""``."""
    meta = getattr(model, "bench_meta", None)
    return {
        "model": model_name or (meta.name if meta is not None else type(model).__name__),
        "weights": weights if weights is not None else (meta.weights if meta is not None else ""),
        "dataset": dataset,
        "split": split,
    }


def _num_classes(model: Any, x: Tensor) -> int:
    """The number of logits ``model`` returns for the first image (its train/eval mode kept), or
    a one-line error if it is not a classifier."""
    n, _, h, w = x.shape
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model is a {type(model).__name__}; accepted: a torch.nn.Module returning logits."
        )
    was_training = model.training
    try:
        with torch.no_grad():
            probe = model.eval()(x[:1].to(module_device(model)))
    finally:
        model.train(was_training)
    if not isinstance(probe, Tensor) or probe.ndim != 2:
        raise ConfigError(
            f"the model returns {getattr(probe, 'shape', type(probe).__name__)} for images "
            f"[1, 3, {h}, {w}]; accepted: a classifier returning logits [B, num_classes]."
        )
    return int(probe.shape[1])


@dataclass
class _Configs:
    """The unresolved method and metric configs, the overrides by name, and the values their
    ``${...}`` interpolations read."""

    raw_methods: dict[str, Any]
    raw_metrics: dict[str, Any]
    per_method: dict[str, dict]
    per_metric: dict[str, dict]
    values: dict[str, Any]


def _values(
    model: nn.Module,
    method_names: list[str],
    metric_names: list[str],
    method_args: Mapping[str, Any] | None,
    metric_args: Mapping[str, Any] | None,
    seed: int,
    cam_layer: str | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    num_classes: int,
    input_size: tuple[int, int],
) -> _Configs:
    """The configs of the methods and metrics asked for, and the model's and dataset's values
    they may interpolate (the CAM layer is looked for only when a config reads it)."""
    meta = getattr(model, "bench_meta", None)
    method_nodes, metric_node = _choices(metric_names, method_names)
    per_method = per_name("method_args", method_args, method_names)
    per_metric = per_name("metric_args", metric_args, metric_names)
    raw_methods = {k: OmegaConf.to_container(v, resolve=False) for k, v in method_nodes.items()}
    raw_metrics = {k: OmegaConf.to_container(metric_node[k], resolve=False) for k in metric_names}
    refs = _refs(raw_methods) | _refs(raw_metrics) | _refs(per_method) | _refs(per_metric)
    wants_layer = any("model.cam_layer" in r for r in refs)
    h, w = input_size
    values = {
        "seed": seed,
        "model": {
            "cam_layer": _cam_layer(model, cam_layer, (h, w)) if wants_layer else cam_layer,
            "mean": _normalisation("mean", mean, getattr(meta, "mean", None)),
            "std": _normalisation("std", std, getattr(meta, "std", None)),
            "input_size": [h, w],
            "num_classes": num_classes,
        },
        "dataset": {"pointing_tolerance": None, "image_size": h},
    }
    return _Configs(raw_methods, raw_metrics, per_method, per_metric, values)


def _jobs(
    method_names: list[str], configs: _Configs, own_maps: Mapping[str, Tensor]
) -> list[tuple[str, Any, Tensor | None]]:
    """``(name, method, maps)`` per method asked for (built, no maps) and per set of the
    caller's own maps (scored as given)."""
    jobs: list[tuple[str, Any, Tensor | None]] = []
    for name in method_names:
        raw, given = configs.raw_methods[name], configs.per_method.get(name, {})
        method = _build(f"method_args[{name}]", f"method={name}", raw, given, configs.values)
        jobs.append((name, method, None))
    return jobs + [(name, _NoMethod(), own) for name, own in own_maps.items()]


def _metrics(
    metric_names: list[str], configs: _Configs, fields: set[str], input_size: tuple[int, int]
) -> dict[str, Metric]:
    """The metrics built, each checked for the fields it needs and the input size."""
    built: dict[str, Metric] = {}
    for name in metric_names:
        metric = _build(
            f"metric_args[{name}]",
            f"metric={name}",
            configs.raw_metrics[name],
            configs.per_metric.get(name, {}),
            configs.values,
        )
        missing = sorted(set(metric.requires) - fields)
        if missing:
            raise ConfigError(
                f"metric={name} needs {', '.join(missing)}; pass {missing[0]}=... (given: "
                f"{', '.join(sorted(fields)) or 'labels only'})."
            )
        built[name] = check_metric(name, metric, input_size)
    return built


def _run(
    model: nn.Module,
    dev: torch.device,
    jobs: list[tuple[str, Any, Tensor | None]],
    metrics: dict[str, Metric],
    row_meta: dict[str, str],
    batches: list[Batch],
    *,
    chunk_size: int | str,
    precision: str,
    seed: int,
    explain: str,
) -> list[dict[str, Any]]:
    """The rows of every (method or maps, metric) cell, seeded as a run is; a user error inside
    becomes one line, and the model's train/eval mode is restored."""
    was_training = model.training
    rows: list[dict[str, Any]] = []
    try:
        model.to(dev).eval()
        cells = [
            (make_cell(model, method, name, metrics, row_meta, device=dev,
                       chunk_size=chunk_size, precision=precision, seed=seed), own)
            for name, method, own in jobs
        ]  # fmt: skip
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)  # as a run does when it starts
            for cell, own in cells:
                rows += _score(cell, own, explain, batches)
    except Exception as err:
        user = user_error(err)
        if user is None:
            raise
        raise ConfigError(str(user)) from err
    finally:
        model.train(was_training)
    return rows


class _NoMethod:
    """``ctx.method`` while scoring precomputed maps: a metric that re-runs the method (the
    sanity checks, max-sensitivity) gets a one-line error naming it."""

    metric = "a metric"

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        raise ConfigError(
            f"metric={self.metric} re-runs the attribution method, so it cannot score "
            "precomputed maps; accepted for maps=: metrics that score the maps alone (score it "
            "with methods=[...] instead)."
        )


def _naming(method: Any) -> Any:
    """For maps given as such: before each metric, tell the stand-in method which metric it is."""
    if not isinstance(method, _NoMethod):
        return None

    def before(name: str) -> None:
        method.metric = name

    return before


def _score(
    cell: Cell, own: Tensor | None, explain: str, batches: list[Batch]
) -> list[dict[str, Any]]:
    """Rows of the cell's method (or of the maps ``own``), batch by batch through the one loop a
    job uses (:func:`bench.engine.score.score_batch`)."""
    rows: list[dict[str, Any]] = []
    start = 0
    for batch in batches:
        batch = batch.to(cell.ctx.device)
        if own is None:

            def attribute(targets: Tensor, batch: Batch = batch) -> Tensor:
                return cell.method(cell.model, batch.images, targets)

        else:
            given = own[start : start + len(batch)].to(cell.ctx.device)

            def attribute(targets: Tensor, given: Tensor = given) -> Tensor:
                return given

        start += len(batch)
        scored = score_batch(
            cell.ctx,
            batch,
            cell.metrics,
            cell.row_meta,
            attribute,
            explain=explain,
            before_metric=_naming(cell.method),
        )
        rows += scored.rows
    return rows
