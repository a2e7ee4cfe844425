"""Collation: many job folders -> one long DataFrame -> a summary table (mean, 95% CI) and a figure.

    python -m bench.results.collate results/sweeps/<stamp>      # or: bench-collate <folder> ...

A multirun collates itself at its end (the ``CollateOnMultirunEnd`` Hydra callback).
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.errors import first_line
from bench.data.subset import SUBSET_KEYS
from bench.engine.io import (
    RECORD,
    ROW_COLUMNS,
    SCORES,
    SUPERSEDED,
    atomic_write_text,
    file_digest,
    pid_alive,
)
from bench.engine.record import CollateError, Record, read_record
from bench.results import stats

# the summary table and figure (re-exported: ``from bench.results.collate import summarise``)
from bench.results.summary import _HIGHER, ARROWS, GROUP, format_table, plot, summarise

log = logging.getLogger("bench.results.collate")


def find_job_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every folder at or below ``roots`` holding a job record, sorted (files a re-launch set
    aside in a ``.superseded`` folder are not a job's)."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if (root / RECORD).is_file():
            found.add(root)
        found.update(
            p.parent for p in root.rglob(RECORD) if SUPERSEDED not in p.relative_to(root).parts
        )
    return sorted(found)


def _direction_of(g: pd.DataFrame) -> str:
    """The direction of one metric's rows (from ``direction``, or the older ``higher_is_better``)."""
    if "direction" in g:
        return str(g["direction"].iloc[0])
    return "higher" if bool(g["higher_is_better"].iloc[0]) else "lower"


def verify_files(job: Path, record: Record) -> None:
    """Check every file the record lists against its size and SHA-256 (records written before
    digests were kept list none: their ``scores.csv`` is checked by :func:`read_scores`)."""
    for name, expected in (record.files or {}).items():
        path = job / name
        if not path.is_file():
            raise CollateError(f"{job}: {name} is missing but its record lists it.")
        got = file_digest(path)
        if got != expected:
            what = (
                f"{got['bytes']} bytes instead of {expected.get('bytes')}"
                if got["bytes"] != expected.get("bytes")
                else "its SHA-256 differs"
            )
            raise CollateError(
                f"{job}: {name} does not match its record ({what}): it was cut or changed after "
                "the job completed; rerun the job or remove the folder."
            )


_NA = ["nan", "NaN", ""]


def read_scores(job: Path, record: Record) -> pd.DataFrame:
    """The job's ``scores.csv``, checked: parseable, every column there, every value a number,
    not cut mid-row, and as many rows as the record counted."""
    path = job / SCORES
    try:
        text_end = path.read_bytes()[-1:]
        df = pd.read_csv(path, keep_default_na=False, na_values=_NA, dtype=str)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, IndexError) as err:
        reason = (
            "it is empty"
            if isinstance(err, (IndexError, pd.errors.EmptyDataError))
            else (f"{type(err).__name__}: {first_line(err)}")
        )
        raise CollateError(f"{job}: {SCORES} cannot be read ({reason}).") from None
    missing = [c for c in ROW_COLUMNS if c not in df.columns]
    if missing:
        raise CollateError(
            f"{job}: {SCORES} has no column(s) {', '.join(missing)}; accepted: a scores table "
            f"with {', '.join(ROW_COLUMNS)}."
        )
    if text_end != b"\n":
        raise CollateError(f"{job}: {SCORES} ends mid-row: it was cut after the job completed.")
    if record.rows is not None and len(df) != record.rows:
        raise CollateError(
            f"{job}: {SCORES} has {len(df)} rows but its record counted {record.rows}: it was "
            "cut or changed after the job completed."
        )
    df = df.fillna("")
    values = pd.to_numeric(df["value"].replace("", "nan"), errors="coerce")
    bad = values.isna() & ~df["value"].isin(_NA)
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise CollateError(
            f"{job}: {SCORES} line {i + 2}: value={df['value'].iloc[i]!r} is not a number."
        )
    df["value"] = values.astype(float)
    df["target"] = pd.to_numeric(df["target"], errors="coerce")
    return df


#: The config keys that define what a row measures (with the metric's own node); the rest
#: (device, batch and chunk sizes, workers, which items, tags) only say how or where it ran.
CELL_KEYS = ("model", "dataset", "method", "seed", "explain", "precision")


def cell_config(config: dict[str, Any], metric: str | None = None) -> dict[str, Any]:
    """What a job's rows measure: ``CELL_KEYS`` of its config, the dataset without its item
    selection, and (given ``metric``) that metric's node."""
    out = {k: config[k] for k in CELL_KEYS if k in config}
    if isinstance(out.get("dataset"), dict):
        out["dataset"] = {k: v for k, v in out["dataset"].items() if k not in SUBSET_KEYS}
    if metric is not None:
        out["metric"] = (config.get("metric") or {}).get(metric)
    return out


def cell_hash(config: dict[str, Any], metric: str) -> str:
    """A stable 16-hex-digit hash of :func:`cell_config` for ``metric`` (a base metric name)."""
    text = json.dumps(cell_config(config, metric), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flat(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(node, default=str)}


def _variants(configs: dict[str, dict[str, Any]], strip: str) -> dict[str, str]:
    """For jobs (key -> config) sharing a label, a suffix ``[k=v,...]`` per job naming the keys
    whose values differ between them (``strip`` removed from key names); "" when they agree."""
    flats = {job: _flat(c) for job, c in configs.items()}
    if len({json.dumps(f, sort_keys=True) for f in flats.values()}) < 2:
        return dict.fromkeys(configs, "")
    keys = sorted(set().union(*flats.values()))
    differ = [k for k in keys if len({f.get(k) for f in flats.values()}) > 1]
    out = {}
    for job, f in flats.items():
        parts: list[str] = []
        for k in differ:
            part = f"{k.removeprefix(strip)}={f.get(k, 'null').strip(chr(34))}"
            if part not in parts:  # method.seed: ${seed} differs with seed, the same words
                parts.append(part)
        out[job] = "[" + ",".join(parts) + "]"
    return out


@dataclass
class Incomplete:
    """A job that did not complete: its folder, status, the rows it kept and why it stopped."""

    job: Path
    status: str
    rows: int
    error: str

    def line(self) -> str:
        kept = f"{self.rows} row(s) kept in {SCORES}.partial" if self.rows else "no rows kept"
        why = f" ({self.error})" if self.error else ""
        return f"{self.status.upper()} {self.job}{why}: {kept}, not in the table."


@dataclass
class NotApplicable:
    """A job skipped because its method cannot apply to its model (``unfit=skip``): complete
    as it is, with no rows."""

    job: Path
    reason: str

    def line(self) -> str:
        return f"NOT APPLICABLE {self.job}: {self.reason}"


@dataclass
class Collation:
    """Rows of every completed job, and what was left out of them and why."""

    rows: pd.DataFrame
    incomplete: list[Incomplete] = field(default_factory=list)
    #: Jobs skipped because their method cannot apply to their model: not incomplete.
    not_applicable: list[NotApplicable] = field(default_factory=list)
    duplicates: int = 0
    duplicate_jobs: tuple[str, str] | None = None
    skipped: list[tuple[Path, dict]] = field(default_factory=list)
    #: Completed jobs that scored no image (an empty shard, ``dataset.ids=[]``).
    empty: list[Path] = field(default_factory=list)

    def report(self) -> list[str]:
        """One line per thing a reader of the table must know (incomplete jobs, jobs whose method
        cannot apply to their model, jobs with no rows, rows counted once that were there twice,
        images skipped as unreadable)."""
        lines = [i.line() for i in self.incomplete]
        lines += [n.line() for n in self.not_applicable]
        for job in self.empty:
            lines.append(
                f"EMPTY {job}: completed with 0 rows, its selection held no image (an empty "
                "shard: more dataset.num_shards than images; dataset.ids=[]; a limit of 0)."
            )
        if self.duplicates:
            first, again = self.duplicate_jobs or ("", "")
            lines.append(
                f"DUPLICATES: {self.duplicates} row(s) scored the same cell on the same image "
                f"twice and are counted once (e.g. in {first} and again in {again})."
            )
        by_job: dict[Path, list[dict]] = {}
        for job, s in self.skipped:
            by_job.setdefault(job, []).append(s)
        for job, items in by_job.items():
            shown = "; ".join(f"{s.get('path')}: {s.get('reason')}" for s in items[:3])
            more = f"; and {len(items) - 3} more (listed in its {RECORD})" if len(items) > 3 else ""
            lines.append(
                f"SKIPPED {job}: {len(items)} unreadable image(s) not scored "
                f"(dataset.on_bad_sample=skip): {shown}{more}"
            )
        return lines


def _status(record: Record) -> str:
    """A record's status; ``running`` becomes ``killed`` when its process is gone from this host."""
    status = str(record.status or "unknown")
    pid = record.pid
    if status == "running" and record.host == socket.gethostname() and isinstance(pid, int):
        return "running" if pid_alive(pid) else "killed"
    return status


def _rows_kept(job: Path) -> int:
    partial = job / f"{SCORES}.partial"
    if not partial.is_file():
        return 0
    with partial.open("rb") as f:
        return max(0, sum(1 for line in f if line.endswith(b"\n")) - 1)


def _job_rows(job: Path, record: Record) -> pd.DataFrame:
    df = read_scores(job, record)
    if df.empty:
        return df
    parts = df["metric"].str.partition(".")
    base, suffix = parts[0], parts[2]
    df["direction"] = [record.metric_info(m).direction(s) for m, s in zip(base, suffix)]
    df["higher_is_better"] = df["direction"].map(_HIGHER)
    aggregates = {m: v.aggregate for m, v in (record.metrics or {}).items()}
    df["aggregate"] = base.map(aggregates).fillna("")
    ranges = {
        (m, k): stats.metric_range(record.metric_info(m).to_dict(), k) or (None, None)
        for m, k in set(zip(base, suffix))
    }
    nan = float("nan")
    for i, side in enumerate(("range_low", "range_high")):
        df[side] = [
            nan if (b := ranges[(m, k)][i]) is None else float(b) for m, k in zip(base, suffix)
        ]
    # the dataset's own class count (a mapped head's num_classes is the model's, e.g. 1000)
    df["num_classes"] = record.dataset.class_count() if record.dataset is not None else 0
    config = record.config or {}
    df["cell"] = base.map({m: cell_hash(config, m) for m in base.unique()})
    df["job"] = str(job)
    return df


def _label_variants(frames: list[pd.DataFrame], configs: dict[str, dict]) -> None:
    """Give jobs whose rows share a (model, dataset, method) label but measure different things
    (e.g. a sweep over ``method.n_steps``) method labels naming the keys that differ, and
    likewise metrics whose nodes differ, so the table never pools two configurations."""
    by_label: dict[tuple, dict[str, dict]] = {}
    for df in frames:
        job = df["job"].iloc[0]
        key = tuple(df[c].iloc[0] for c in ("model", "dataset", "method"))
        by_label.setdefault(key, {})[job] = cell_config(configs[job])
    method_suffix: dict[str, str] = {}
    for jobs in by_label.values():
        method_suffix.update(_variants(jobs, "method."))
    for df in frames:
        suffix = method_suffix[df["job"].iloc[0]]
        if suffix:
            df["method"] = df["method"] + suffix
    by_metric: dict[tuple, dict[str, dict]] = {}
    for df in frames:
        job = df["job"].iloc[0]
        for m in df["metric"].str.partition(".")[0].unique():
            key = (df["model"].iloc[0], df["dataset"].iloc[0], df["method"].iloc[0], m)
            by_metric.setdefault(key, {})[job] = (configs[job].get("metric") or {}).get(m) or {}
    for (_, _, _, m), jobs in by_metric.items():
        for job, suffix in _variants(jobs, "").items():
            if suffix:
                df = next(f for f in frames if f["job"].iloc[0] == job)
                base = df["metric"].str.partition(".")
                hit = base[0] == m
                df.loc[hit, "metric"] = m + suffix + base[1][hit] + base[2][hit]


def collate(dirs: Sequence[str | Path]) -> Collation:
    """Read, verify and merge every job under ``dirs``.

    Completed jobs' files are checked against their records (a mismatch raises a
    :class:`CollateError` naming the folder); jobs that did not complete are listed, not read, and
    so are jobs skipped because their method cannot apply to their model (not incomplete); a
    row of the same cell (:func:`cell_hash`) on the same image met in several folders is counted
    once; configurations that differ under one label get labels naming what differs.
    """
    frames, configs = [], {}
    result = Collation(rows=pd.DataFrame())
    for job in find_job_dirs(dirs):
        record = read_record(job)
        status = _status(record)
        if status == "skipped":
            reason = " ".join(str(record.reason or "its method cannot apply").split())
            result.not_applicable.append(NotApplicable(job, reason))
            continue
        if status != "completed":
            error = str(record.error or "")
            result.incomplete.append(Incomplete(job, status, _rows_kept(job), error))
            continue
        verify_files(job, record)
        if not (job / SCORES).is_file():
            raise CollateError(f"{job}: its record says completed but {SCORES} is missing.")
        df = _job_rows(job, record)
        if df.empty:
            result.empty.append(job)
            continue
        frames.append(df)
        configs[str(job)] = record.config or {}
        result.skipped += [(job, s) for s in (record.dataset.skipped if record.dataset else [])]
    if not frames:
        result.rows = pd.DataFrame(columns=[*GROUP, "value", "job"])
        return result
    _label_variants(frames, configs)
    rows = pd.concat(frames, ignore_index=True)
    key = ["cell", "model", "weights", "dataset", "split", "image_id", "target", "metric"]
    dup = rows.duplicated(subset=key, keep="first")
    if dup.any():
        again = rows[dup].iloc[0]
        first = rows[~dup].merge(again[key].to_frame().T.astype(rows[key].dtypes), on=key)
        result.duplicates = int(dup.sum())
        result.duplicate_jobs = (str(first["job"].iloc[0]), str(again["job"]))
        rows = rows[~dup].reset_index(drop=True)
    result.rows = rows
    return result


def collate_dirs(dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Rows of every completed job under ``dirs`` (see :func:`collate`), with a ``job`` column
    and each metric's direction (``higher_is_better``) and aggregation (``aggregate``)."""
    return collate(dirs).rows


def failed_jobs(dirs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """``(folder, error)`` of every job under ``dirs`` that did not complete."""
    return [(i.job, i.error or i.status) for i in collate(dirs).incomplete]


def write_summary(
    root: Path, collation: Collation | pd.DataFrame | None = None
) -> tuple[pd.DataFrame, str]:
    """Collate ``root`` (or use ``collation``); write ``scores_all.csv``, ``summary.csv``,
    ``summary.md`` (the table, then one line per job or row left out and why) and ``summary.png``."""
    if collation is None:
        collation = collate([root])
    elif isinstance(collation, pd.DataFrame):
        collation = Collation(rows=collation)
    df = collation.rows
    summary = summarise(df)
    table = format_table(summary)
    notes = collation.report()
    if not df.empty or notes:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "scores_all.csv", df.to_csv(index=False))
        atomic_write_text(root / "summary.csv", summary.to_csv(index=False))
        atomic_write_text(
            root / "summary.md", "\n\n".join([table, *(["\n".join(notes)] if notes else [])]) + "\n"
        )
        if not summary.empty:
            plot(summary, root / "summary.png")
    return summary, table


__all__ = [
    "ARROWS",
    "CELL_KEYS",
    "GROUP",
    "CollateError",
    "Collation",
    "Incomplete",
    "NotApplicable",
    "Record",
    "cell_config",
    "cell_hash",
    "collate",
    "collate_dirs",
    "failed_jobs",
    "find_job_dirs",
    "format_table",
    "plot",
    "read_record",
    "read_scores",
    "summarise",
    "verify_files",
    "write_summary",
]
