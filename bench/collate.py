"""Collation: many job folders -> one long DataFrame -> a summary table (mean, 95% CI) and a figure.

    python -m bench.collate results/sweeps/<stamp>      # or: bench-collate <folder> ...

A multirun collates itself at its end (the ``CollateOnMultirunEnd`` Hydra callback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback

from bench.io import RECORD, SCORES, atomic_write_bytes, atomic_write_text

log = logging.getLogger("bench.collate")

GROUP = ["model", "dataset", "method", "metric"]


def find_job_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every folder at or below ``roots`` holding a job record, sorted."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if (root / RECORD).is_file():
            found.add(root)
        found.update(p.parent for p in root.rglob(RECORD))
    return sorted(found)


def read_record(job: Path) -> dict[str, Any]:
    return json.loads((job / RECORD).read_text())


#: How a direction is shown in table headers and figure titles.
ARROWS = {"higher": "↑", "lower": "↓", "none": ""}
_HIGHER = {"higher": True, "lower": False}


def _direction(meta: dict[str, Any], metric: str, suffix: str) -> str:
    """``higher``, ``lower`` or ``none`` (descriptive) for ``<metric>.<suffix>``, from the job
    record's metric metadata (records before per-key directions give a bool per metric)."""
    info = meta.get(metric, {})
    d = info.get("directions", {}).get(suffix)
    if d is None:
        d = info.get("higher_is_better", True)
    if isinstance(d, bool):
        return "higher" if d else "lower"
    return str(d)


def _direction_of(g: pd.DataFrame) -> str:
    """The direction of one metric's rows (from ``direction``, or the older ``higher_is_better``)."""
    if "direction" in g:
        return str(g["direction"].iloc[0])
    return "higher" if bool(g["higher_is_better"].iloc[0]) else "lower"


def collate_dirs(dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Rows of every completed job under ``dirs``, with a ``job`` column and each metric's direction
    (``higher_is_better``) and aggregation (``aggregate``) from the job records."""
    frames = []
    for job in find_job_dirs(dirs):
        record = read_record(job)
        if record.get("status") != "completed" or not (job / SCORES).is_file():
            continue
        df = pd.read_csv(
            job / SCORES,
            keep_default_na=False,
            na_values=["nan", "NaN", ""],
            dtype={"image_id": str, "flag": str},
        )
        meta = record.get("metrics", {})
        base = df["metric"].str.split(".").str[0]
        suffix = df["metric"].str.split(".", n=1).str[1].fillna("")

        df["direction"] = [_direction(meta, m, s) for m, s in zip(base, suffix)]
        df["higher_is_better"] = df["direction"].map(_HIGHER)
        df["aggregate"] = base.map({m: v.get("aggregate", "") for m, v in meta.items()}).fillna("")
        # the dataset's own class count (a mapped head's num_classes is the model's, e.g. 1000)
        data = record.get("dataset", {})
        df["num_classes"] = data.get("classes", data.get("num_classes", 0)) or 0
        df["job"] = str(job)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[*GROUP, "value", "job"])
    return pd.concat(frames, ignore_index=True)


def failed_jobs(dirs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """``(folder, error)`` of every job under ``dirs`` that did not complete."""
    out = []
    for job in find_job_dirs(dirs):
        record = read_record(job)
        if record.get("status") != "completed":
            out.append((job, record.get("error", record.get("status", "unknown"))))
    return out


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t confidence interval of the mean of ``values`` (NaNs dropped)."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    from scipy import stats  # about 1 s to import: only when an interval is asked for

    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def summarise(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per (model, dataset, method, metric): n, mean, CI bounds, direction and, for
    metrics whose protocol averages over classes (pointing game), the unweighted class mean."""
    out = []
    for key, g in df.groupby(GROUP, sort=True):
        values = g["value"].to_numpy(dtype=float)
        m, lo, hi = mean_ci(values, level)
        row = dict(zip(GROUP, key))
        direction = _direction_of(g)
        row.update(
            n=int((~np.isnan(values)).sum()),
            mean=m,
            ci_low=lo,
            ci_high=hi,
            higher_is_better=_HIGHER.get(direction),
            direction=direction,
        )
        if "aggregate" in g and g["aggregate"].iloc[0] == "class_mean":
            # TorchRay: per-class accuracy, unweighted mean over all classes, a class with no
            # scored pair counting 0; classes_scored says how many classes had pairs.
            per_class = g.groupby("target")["value"].mean()
            num_classes = int(g["num_classes"].max()) if "num_classes" in g else 0
            row["classes_scored"] = int(per_class.notna().sum())
            row["class_mean"] = float(per_class.fillna(0).sum() / max(num_classes, len(per_class)))
        out.append(row)
    return pd.DataFrame(out)


def format_table(
    summary: pd.DataFrame, metrics: Sequence[str] | None = None, ci: bool = True
) -> str:
    """A Markdown table: one row per (model, dataset, method), a column per metric, ``mean ± half CI``.

    ``metrics`` picks and orders the columns (``road_abc``, ``model_randomisation_cascading.ssim``);
    ``ci=False`` prints means only (paper tables that state n once). A cell with no score is ``—``.
    """
    if summary.empty:
        return "(no completed jobs)"
    if metrics is not None:
        unknown = [m for m in metrics if m not in set(summary["metric"])]
        if unknown:
            raise ValueError(
                f"metric column(s) {', '.join(unknown)} not in the collated jobs; "
                f"accepted: {', '.join(sorted(summary['metric'].unique()))}."
            )
        summary = summary[summary["metric"].isin(metrics)]

    def cell(r: pd.Series) -> str:
        if np.isnan(r["mean"]):
            return "—"
        half = (
            "" if not ci or np.isnan(r["ci_high"]) else f" ± {(r['ci_high'] - r['ci_low']) / 2:.3f}"
        )
        return f"{r['mean']:.3f}{half}"

    arrows = summary.groupby("metric")["direction"].first().map(ARROWS)
    table = summary.assign(cell=summary.apply(cell, axis=1)).pivot_table(
        index=["model", "dataset", "method"], columns="metric", values="cell", aggfunc="first"
    )
    if metrics is not None:
        table = table[list(metrics)]
    table = table.fillna("—")
    table.columns = [f"{c} {arrows[c]}".rstrip() for c in table.columns]
    n = summary.groupby(["model", "dataset", "method"])["n"].max()
    table.insert(0, "n", n)
    table = table.reset_index()
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, sep] + [
        "| " + " | ".join(map(str, r)) + " |" for r in table.itertuples(index=False)
    ]
    return "\n".join(lines)


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Bar chart per metric: each method's mean with its 95% CI."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted(summary["metric"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        s = summary[summary["metric"] == metric]
        labels = [
            f"{m}\n{mo}" if summary["model"].nunique() > 1 else m
            for m, mo in zip(s["method"], s["model"])
        ]
        err = np.stack([s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]]).clip(min=0)
        ax.bar(range(len(s)), s["mean"], yerr=np.nan_to_num(err), capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(s)), labels, rotation=45, ha="right", fontsize=8)
        arrow = {"higher": "↑ higher is better", "lower": "↓ lower is better"}.get(
            s["direction"].iloc[0], "descriptive"
        )
        ax.set_title(f"{metric}\n({arrow})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_summary(root: Path, df: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """Collate ``root``; write ``scores_all.csv``, ``summary.csv``, ``summary.md``, ``summary.png``."""
    df = collate_dirs([root]) if df is None else df
    summary = summarise(df)
    table = format_table(summary)
    if not df.empty:
        atomic_write_text(root / "scores_all.csv", df.to_csv(index=False))
        atomic_write_text(root / "summary.csv", summary.to_csv(index=False))
        atomic_write_text(root / "summary.md", table + "\n")
        plot(summary, root / "summary.png")
    return summary, table


class CollateOnMultirunEnd(Callback):
    """Hydra callback: collate the sweep folder when a multirun ends; fail if any job failed."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        summary, table = write_summary(root)
        print(f"\nSummary of {root} (mean ± 95% CI half-width):\n\n{table}\n")
        if not summary.empty:
            print(f"Written: {root}/summary.md, summary.csv, summary.png, scores_all.csv")
        failed = failed_jobs([root])
        if failed:
            for job, error in failed:
                print(f"FAILED {job.name}: {error}", file=sys.stderr)
            raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Collate job folders into one summary table.")
    p.add_argument("folders", nargs="+", help="sweep or job folders (searched recursively)")
    p.add_argument(
        "--out", default=None, help="where to write the summary (default: the first folder)"
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated columns, in order, for the printed table (e.g. road_abc,mprt.spearman_abs)",
    )
    p.add_argument(
        "--means", action="store_true", help="print means only, without the CI half-widths"
    )
    args = p.parse_args(argv)
    df = collate_dirs(args.folders)
    summary, table = write_summary(Path(args.out or args.folders[0]), df)
    if args.metrics or args.means:
        metrics = (
            [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
        )
        try:
            table = format_table(summary, metrics, ci=not args.means)
        except ValueError as err:
            print(f"bench-collate: {err}", file=sys.stderr)
            return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
