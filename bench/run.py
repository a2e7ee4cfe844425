"""The Hydra entry point: wire one (model, dataset, method, metrics) cell together and score it."""

from __future__ import annotations

import importlib.metadata
import logging
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import ROOT, __version__
from bench.allocator import allocator_state, keep_freed_memory
from bench.context import Context, resolve_device
from bench.data.base import Batch, collate
from bench.data.subset import SUBSET_KEYS, select
from bench.errors import ConfigError, choice_error
from bench.io import CURVES, MAPS, RECORD, SCORES, RowWriter, atomic_savez, atomic_write_json
from bench.models import meta_of
from bench.timing import Timer
from metrics.base import Metric, MetricOutput

log = logging.getLogger("bench")

EXPLAIN = ("label", "prediction")
PACKAGES = (
    "torch",
    "torchvision",
    "captum",
    "hydra-core",
    "numpy",
    "pandas",
    "scikit-image",
    "lime",
    "shap",
)


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, plus Python and the project's git commit."""
    out = {"attribution-bench": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        out["git"] = commit + ("-dirty" if dirty else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def build_dataset(cfg: DictConfig, seed: int):
    """Instantiate ``cfg.dataset`` without its subset keys, then select the job's items."""
    node = OmegaConf.to_container(cfg, resolve=True)
    subset = {k: node.pop(k) for k in SUBSET_KEYS if k in node}
    dataset = instantiate(node)
    return dataset, select(dataset, seed=seed, **subset), subset


def rows_of(
    out: MetricOutput, metric: str, batch: Batch, meta: dict[str, str]
) -> list[dict[str, Any]]:
    """Long-format rows of one metric's output for a batch (tensors moved to the CPU here, once)."""
    rows = []
    for suffix, scores in out.scores.items():
        name = f"{metric}.{suffix}" if suffix else metric
        values = scores.detach().float().cpu().tolist()
        flags = out.flags.get(suffix)
        flags = flags.cpu().tolist() if flags is not None else [False] * len(values)
        omit = out.omit.get(suffix)
        omit = omit.cpu().tolist() if omit is not None else [False] * len(values)
        for i, value in enumerate(values):
            if omit[i]:
                continue
            flag = out.flag_reason if flags[i] else ("nan" if math.isnan(value) else "")
            rows.append(
                {
                    **meta,
                    "image_id": batch.ids[i],
                    "target": int(batch.targets[i]),
                    "metric": name,
                    "value": value,
                    "flag": flag,
                }
            )
    return rows


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Score one cell; write ``scores.csv``, ``curves.npz`` and ``record.json`` into ``out_dir``."""
    started = time.time()
    record: dict[str, Any] = {
        "status": "running",
        "config": OmegaConf.to_container(cfg, resolve=True),
        "choices": dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {},
        "versions": versions(),
    }
    if cfg.explain not in EXPLAIN:
        raise choice_error("explain", cfg.explain, EXPLAIN)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    timer = Timer(device)
    record["device"] = device_info(device)
    record["device"]["allocator"] = (
        keep_freed_memory() if cfg.keep_freed_memory else allocator_state()
    )
    writer: RowWriter | None = None
    try:
        with timer("load_model"):
            model = instantiate(cfg.model).to(device).eval()
            meta = meta_of(model)
        with timer("load_data"):
            base, dataset, subset = build_dataset(cfg.dataset, cfg.seed)
        record["model"] = meta.to_dict()
        record["dataset"] = {
            "name": base.name,
            "split": base.split,
            "size": len(base),
            "num_classes": base.num_classes,
            "selected": len(dataset),
            **subset,
            "class_mapping": getattr(base, "class_indices", None),
            "resize": getattr(getattr(base, "preprocess", None), "resize", None),
        }
        if base.num_classes and base.num_classes != meta.num_classes:
            raise ConfigError(
                f"model={meta.name} has {meta.num_classes} classes but dataset={base.name} has "
                f"{base.num_classes}; set the dataset's class mapping or choose a matching model."
            )
        method_name = (
            HydraConfig.get().runtime.choices.get("method", "method")
            if HydraConfig.initialized()
            else "method"
        )
        method = instantiate(cfg.method)
        method.check(model)
        metrics: dict[str, Metric] = {}
        for name, mcfg in (cfg.metric or {}).items():
            metric = instantiate(mcfg)
            base.require(metric.requires, f"metric={name}")
            metrics[name] = metric
        record["method"] = {
            "name": method_name,
            "class": type(method).__name__,
            "settings": OmegaConf.to_container(cfg.method, resolve=True),
        }
        record["metrics"] = {
            n: {
                "class": type(m).__name__,
                **m.meta(),
                "requires": sorted(m.requires),
                "settings": m.settings(),
            }
            for n, m in metrics.items()
        }
        for name, metric in metrics.items():
            if hasattr(metric, "layer_names"):  # the x axis of layer-wise sanity curves
                record["metrics"][name]["curve_x"] = list(metric.layer_names(model))
        ctx = Context(
            model=model,
            device=device,
            chunk_size=cfg.chunk_size,
            precision=cfg.precision,
            method=method,
            seed=cfg.seed,
        )
        row_meta = {
            "model": meta.name,
            "weights": meta.weights,
            "dataset": base.name,
            "split": base.split,
            "method": method_name,
        }
        writer = RowWriter(out_dir / SCORES)
        curves: dict[str, list[np.ndarray]] = {}
        curve_ids: dict[str, list[str]] = {}
        saved_maps: list[np.ndarray] = []
        saved_ids: list[str] = []
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.num_workers,
            collate_fn=collate,
        )
        for batch in tqdm(loader, desc=f"{method_name} on {base.name}", unit="batch"):
            batch = batch.to(device)
            targets = batch.targets if cfg.explain == "label" else ctx.predictions(batch.images)
            with timer("attribute"):
                maps = method(model, batch.images, targets)
            if cfg.save_maps:
                saved_maps.append(maps.half().cpu().numpy())
                saved_ids.extend(batch.ids)
            rows = []
            for name, metric in metrics.items():
                with timer(f"metric.{name}"):
                    out = metric(ctx, batch, maps)
                rows += rows_of(out, name, batch, row_meta)
                for suffix, curve in out.curves.items():
                    key = f"{name}.{suffix}" if suffix else name
                    curves.setdefault(key, []).append(curve.float().cpu().numpy())
                    curve_ids.setdefault(key, []).extend(batch.ids)
            writer.write(rows)
        writer.close(complete=True)
        arrays = {k: np.concatenate(v) for k, v in curves.items()}
        arrays.update({f"{k}.ids": np.array(v) for k, v in curve_ids.items()})
        if arrays:
            atomic_savez(out_dir / CURVES, arrays)
        if saved_maps:
            atomic_savez(
                out_dir / MAPS, {"maps": np.concatenate(saved_maps), "ids": np.array(saved_ids)}
            )
        record["status"] = "completed"
        record["rows"] = writer.count
        record["forward"] = {"images": ctx.forward_images, "seconds": round(ctx.forward_seconds, 4)}
        return record
    except BaseException as err:
        record["status"] = "failed" if not isinstance(err, KeyboardInterrupt) else "interrupted"
        user = as_config_error(err)
        record["error"] = str(user) if user is not None else f"{type(err).__name__}: {err}"
        if writer is not None:
            kept = writer.close(complete=False)
            record["rows"] = writer.count
            record["partial_scores"] = kept.name
        raise
    finally:
        record["timings"] = timer.as_dict()
        record["wall_seconds"] = round(time.time() - started, 3)
        atomic_write_json(out_dir / RECORD, record)


def as_config_error(err: BaseException) -> ConfigError | None:
    """The user-facing ConfigError behind ``err`` (Hydra wraps errors raised while instantiating)."""
    seen = err
    while seen is not None:
        if isinstance(seen, ConfigError):
            return seen
        seen = seen.__cause__
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, TypeError):
        # a key the constructor does not take, or a value of the wrong type
        key = [
            ln.split(":", 1)[1].strip()
            for ln in str(err).splitlines()
            if ln.startswith("full_key:")
        ]
        return ConfigError(f"{key[0] if key else 'config'}: {err.__cause__}")
    return None


def task(cfg: DictConfig) -> None:
    """Hydra task: run one cell; a configuration error becomes one line on stderr, not a traceback."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        record = run(cfg, out_dir)
    except Exception as err:
        user = as_config_error(err)
        if user is not None:
            if multirun:  # the other jobs go on; the collation callback reports the failure
                log.error("%s", user)
                return
            print(f"error: {user}", file=sys.stderr)
            sys.exit(2)
        if multirun:
            log.exception("job failed: %s", err)
            return
        raise
    log.info("%d rows, %.1f s -> %s", record["rows"], record["wall_seconds"], out_dir)
    if not multirun:
        from bench.collate import collate_dirs, format_table, summarise

        df = collate_dirs([out_dir])
        print(format_table(summarise(df)))
