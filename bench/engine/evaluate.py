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

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, MissingMandatoryValue, OmegaConfBaseException
from torch import Tensor, nn

from bench.config.compose import compose
from bench.config.overrides import options
from bench.config.validate import EXPLAIN, check_node_keys, construct_node, user_error
from bench.core.batch import Batch
from bench.core.context import resolve_device
from bench.core.errors import ConfigError, check_choice, check_int, choice_error
from bench.core.layers import get_layer, last_feature_map_layer, module_device
from bench.engine.build import Cell, check_metric, make_cell
from bench.engine.io import ROW_COLUMNS
from bench.engine.score import score_batch
from bench.metrics.base import Metric

__all__ = ["evaluate"]

#: The ``method`` value of the rows of ``maps=`` given as one array (a dict names them itself).
MAPS_NAME = "maps"
_MISSING = "???"


# -- argument checks -------------------------------------------------------------------------


def _names(key: str, value: str | Sequence[str] | None, group: str) -> list[str]:
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


def _tensor(key: str, value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(
            f"{key} is a {type(value).__name__} that is not an array ({err}); accepted: {what}."
        ) from None


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def _images(images: Any) -> Tensor:
    what = "a float tensor or array [N, 3, H, W], normalised for the model"
    t = _tensor("images", images, what)
    if t.ndim != 4 or t.shape[1] != 3 or t.shape[0] == 0 or not t.is_floating_point():
        raise ConfigError(f"images is {t.dtype} {_shape(t)}; accepted: {what}.")
    return t.float()


def _labels(labels: Any, n: int, num_classes: int) -> Tensor:
    what = f"{n} class indices (one per image), integers in 0..{num_classes - 1}"
    t = _tensor("labels", labels, what).reshape(-1) if not isinstance(labels, int) else None
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


def _ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    out = [str(i) for i in ids]
    if len(out) != n:
        raise ConfigError(f"ids has {len(out)} values but images has {n}; accepted: {n} strings.")
    if len(set(out)) != n:
        dup = next(i for i in out if out.count(i) > 1)
        raise ConfigError(f"ids has {dup!r} twice; accepted: {n} distinct strings.")
    return out


def _orig_sizes(orig_sizes: Any, n: int, h: int, w: int) -> Tensor:
    what = f"(H, W) for all images, or [N, 2] = [{n}, 2] integers >= 1 (default: ({h}, {w}))"
    if orig_sizes is None:
        return torch.tensor([[h, w]] * n, dtype=torch.long)
    t = _tensor("orig_sizes", orig_sizes, what)
    if t.shape == (2,):
        t = t[None].expand(n, 2)
    if (
        t.shape != (n, 2)
        or t.is_floating_point()
        and not torch.equal(t, t.round())
        or (t < 1).any()
    ):
        raise ConfigError(f"orig_sizes is {_shape(t)}; accepted: {what}.")
    return t.long().contiguous()


def _boxes(boxes: Any, n: int) -> list[Tensor] | None:
    what = (
        f"one [K_i, 4] xyxy array per image ({n} in all; K_i may be 0), or [N, 4] / [N, K, 4], "
        "in the original image's pixel coordinates"
    )
    if boxes is None:
        return None
    if isinstance(boxes, (Tensor, np.ndarray)):
        t = _tensor("boxes", boxes, what).float()
        if t.ndim == 2 and t.shape == (n, 4):
            return [b[None] for b in t]
        if t.ndim == 3 and t.shape[0] == n and t.shape[2] == 4:
            return list(t)
        raise ConfigError(f"boxes is {_shape(t)}; accepted: {what}.")
    items = list(boxes)
    if len(items) != n:
        raise ConfigError(f"boxes has {len(items)} entries but images has {n}; accepted: {what}.")
    out = []
    for i, b in enumerate(items):
        t = _tensor(f"boxes[{i}]", b, what).float()
        if t.shape == (4,):
            t = t[None]
        if t.numel() == 0:
            t = t.reshape(0, 4)
        if t.ndim != 2 or t.shape[1] != 4:
            raise ConfigError(f"boxes[{i}] is {_shape(t)}; accepted: {what}.")
        out.append(t)
    return out


def _masks(masks: Any, n: int, h: int, w: int) -> Tensor | None:
    what = f"a bool tensor or array [N, H, W] = [{n}, {h}, {w}] (at the input's resolution)"
    if masks is None:
        return None
    t = _tensor("masks", masks, what)
    if t.shape != (n, h, w):
        raise ConfigError(f"masks is {_shape(t)}; accepted: {what}.")
    return t.bool()


def _partners(
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
    t = _tensor("partners", partners, what).reshape(-1)
    if len(t) != n or t.is_floating_point() and not torch.equal(t, t.round()):
        raise ConfigError(f"partners is {_shape(t)}; accepted: {what}.")
    t = t.long()
    bad = (t < 0) | (t >= num_classes) | (t == targets)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ConfigError(
            f"partners[{i}]={int(t[i])} is not valid (label {int(targets[i])}); accepted: {what}."
        )
    what_m = f"a bool tensor or array [N, H, W] = [{n}, {h}, {w}] (at the input's resolution)"
    m = _tensor("partner_masks", partner_masks, what_m)
    if m.shape != (n, h, w):
        raise ConfigError(f"partner_masks is {_shape(m)}; accepted: {what_m}.")
    return t, m.bool()


def _maps(maps: Any, n: int, h: int, w: int) -> dict[str, Tensor]:
    what = f"a float tensor or array [N, H, W] = [{n}, {h}, {w}], or a dict name -> such maps"
    if maps is None:
        return {}
    items = maps.items() if isinstance(maps, Mapping) else [(MAPS_NAME, maps)]
    out = {}
    for name, m in items:
        key = "maps" if not isinstance(maps, Mapping) else f"maps[{name!r}]"
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key} has no name; accepted: {what}.")
        t = _tensor(key, m, what)
        if t.shape != (n, h, w) or not (t.is_floating_point() or t.dtype == torch.bool):
            raise ConfigError(f"{key} is {t.dtype} {_shape(t)}; accepted: {what}.")
        out[name] = t.float()
    if not out:
        raise ConfigError(f"maps is empty; accepted: {what}.")
    return out


def _per_name(key: str, args: Mapping[str, Any] | None, names: list[str]) -> dict[str, dict]:
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
    """Score ``methods`` (and/or precomputed ``maps``) on ``images`` with ``metrics``.

    Returns a DataFrame of the rows a run writes (:data:`bench.engine.io.ROW_COLUMNS`: ``model, weights,
    dataset, split, image_id, target, method, metric, value, flag``), one per (image, method,
    metric score), in the order a run writes them (batch by batch, method by method).

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
        boxes: for localisation metrics: per image a ``[K_i, 4]`` xyxy box array of the target
            class in the **original image's pixel coordinates** (0-based, exclusive end;
            :class:`bench.core.batch.Sample`), or ``[N, 4]`` / ``[N, K, 4]``.
        masks: bool ``[N, H, W]`` class regions at the input resolution (``region: masks``).
        partners, partner_masks: for ``class_sensitivity``: per image a second class present
            (``N`` class indices, each other than the image's label) and its region (bool
            ``[N, H, W]``); ``masks`` is then the labelled class's region (the scenes benchmark's
            pairs, :class:`bench.core.batch.Sample`).
        ids: ``N`` distinct strings for the ``image_id`` column (default ``"0"`` .. ``"N-1"``).
        orig_sizes: ``(H, W)`` or ``[N, 2]`` sizes of the original images the boxes refer to
            (default: the input size, i.e. boxes in input pixels).
        difficult: bool ``[N]``: the pairs ``pointing_game.difficult`` repeats the score on.
        mean, std: the per-channel normalisation of ``images`` (metrics that impute in pixel
            space, the ROAD family, need it); default: the model's ``bench_meta``.
        cam_layer: the layer CAM methods use; default: the model's ``bench_meta.cam_layer``, else
            ``cam_layer: auto``'s choice (the last module with a spatial output).
        device, batch_size, chunk_size, precision, explain, seed: as the run's top-level keys
            (``conf/config.yaml``).
        method_args, metric_args: config keys to override, ``{name: {key: value}}`` (or, with
            one method / metric, ``{key: value}``), e.g. ``{"integrated_gradients": {"n_steps": 8}}``.
        model_name, weights, dataset, split: the row labels (default: the model's
            ``bench_meta`` name and weights, else its class name and ``""``; ``user``; ``""``).

    Raises:
        ConfigError: one line naming a bad argument and what is accepted, before any compute.
    """
    x = _images(images)
    n, _, h, w = x.shape
    method_names = _names("methods", methods, "method")
    metric_names = _names("metrics", metrics, "metric")
    if not metric_names:
        raise ConfigError("metrics is empty; accepted: one or more names of conf/metric/.")
    own_maps = _maps(maps, n, h, w)
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
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_choice("explain", explain, EXPLAIN)
    check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    dev = resolve_device(device)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model is a {type(model).__name__}; accepted: a torch.nn.Module returning logits."
        )
    meta = getattr(model, "bench_meta", None)
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
    targets = _labels(labels, n, int(probe.shape[1]))
    image_ids = _ids(ids, n)
    sizes = _orig_sizes(orig_sizes, n, h, w)
    box_list = _boxes(boxes, n)
    mask_t = _masks(masks, n, h, w)
    partner_t, partner_mask_t = _partners(partners, partner_masks, targets, n, h, w, probe.shape[1])
    hard = torch.zeros(n, dtype=torch.bool) if difficult is None else None
    if hard is None:
        hard = _tensor("difficult", difficult, f"{n} bools").reshape(-1).bool()
        if len(hard) != n:
            raise ConfigError(f"difficult has {len(hard)} values but images has {n}.")

    method_nodes, metric_node = _choices(metric_names, method_names)
    per_method = _per_name("method_args", method_args, method_names)
    per_metric = _per_name("metric_args", metric_args, metric_names)
    raw_methods = {k: OmegaConf.to_container(v, resolve=False) for k, v in method_nodes.items()}
    raw_metrics = {k: OmegaConf.to_container(metric_node[k], resolve=False) for k in metric_names}
    refs = _refs(raw_methods) | _refs(raw_metrics) | _refs(per_method) | _refs(per_metric)
    wants_layer = any("model.cam_layer" in r for r in refs)
    values = {
        "seed": seed,
        "model": {
            "cam_layer": _cam_layer(model, cam_layer, (h, w)) if wants_layer else cam_layer,
            "mean": _normalisation("mean", mean, getattr(meta, "mean", None)),
            "std": _normalisation("std", std, getattr(meta, "std", None)),
            "input_size": [h, w],
            "num_classes": int(probe.shape[1]),
        },
        "dataset": {"pointing_tolerance": None, "image_size": h},
    }
    built_methods = {
        name: _build(
            f"method_args[{name}]",
            f"method={name}",
            raw_methods[name],
            per_method.get(name, {}),
            values,
        )
        for name in method_names
    }
    built_metrics: dict[str, Metric] = {}
    fields = {"boxes"} if box_list is not None else set()
    fields |= {"masks"} if mask_t is not None else set()
    fields |= {"partners"} if partner_t is not None else set()
    for name in metric_names:
        metric = _build(
            f"metric_args[{name}]",
            f"metric={name}",
            raw_metrics[name],
            per_metric.get(name, {}),
            values,
        )
        missing = sorted(set(metric.requires) - fields)
        if missing:
            raise ConfigError(
                f"metric={name} needs {', '.join(missing)}; pass {missing[0]}=... (given: "
                f"{', '.join(sorted(fields)) or 'labels only'})."
            )
        built_metrics[name] = check_metric(name, metric, (h, w))

    row_meta = {
        "model": model_name or (meta.name if meta is not None else type(model).__name__),
        "weights": weights if weights is not None else (meta.weights if meta is not None else ""),
        "dataset": dataset,
        "split": split,
    }
    batches = [  # the batches a run's DataLoader makes (no shuffling, the last one short)
        Batch(
            images=x[sl],
            targets=targets[sl],
            ids=image_ids[sl],
            orig_sizes=sizes[sl],
            boxes=None if box_list is None else box_list[sl],
            masks=None if mask_t is None else mask_t[sl],
            difficult=hard[sl],
            partners=None if partner_t is None else partner_t[sl],
            partner_masks=None if partner_mask_t is None else partner_mask_t[sl],
        )
        for sl in (slice(s, s + batch_size) for s in range(0, n, batch_size))
    ]
    jobs = [(name, method, None) for name, method in built_methods.items()]
    jobs += [(name, _NoMethod(), own) for name, own in own_maps.items()]
    rows: list[dict[str, Any]] = []
    try:
        model.to(dev).eval()
        cells = [
            (make_cell(model, method, name, built_metrics, row_meta, device=dev,
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
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    df["target"] = df["target"].astype(int)
    df["value"] = df["value"].astype(float)
    return df


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
