"""The job record (``record.json``): its one typed definition, its one writer and its one reader.

A job writes its record when it starts (status ``running``) and in every case when it ends
(``completed``, ``failed``, ``interrupted`` or ``skipped``), always through :func:`write_record`;
collation, the figures, the paper tables and the loggers read it through :func:`read_record`, as a
:class:`Record`. ``schema`` numbers the layout: records written before it was kept (the release
before this one) have none and read as schema 0; keys this release does not know are kept in
``extra`` (and written back as they were), so reading and writing a record loses nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from bench.core.errors import ConfigError, first_line
from bench.data.subset import SUBSET_KEYS
from bench.engine.io import RECORD, atomic_write_json

log = logging.getLogger("bench")

#: The record's layout; 0 is a record without ``schema`` (written by the release before it).
SCHEMA = 1
#: A record's ``status``: ``running`` until the job ends, then one of the others.
STATUSES = ("running", "completed", "failed", "interrupted", "skipped")
#: What a record keeps when only a small one can be written (the disk is full).
SMALL_RECORD = (
    "started",
    "host",
    "pid",
    "config_hash",
    "rows",
    "batches_complete",
    "partial_scores",
)


class CollateError(ConfigError):
    """A job folder whose files cannot be trusted: one line naming the folder and the file."""


class _Part:
    """A section of the record: typed fields in the order they are written, ``extra`` for keys
    this release does not know. A field marked ``optional`` is left out while it is None; the
    other fields a record read without them stay out of :meth:`to_dict` (``_absent``)."""

    extra: dict[str, Any]
    _absent: frozenset[str]
    #: Fields read from a key of another name (``class`` is a keyword).
    KEYS: ClassVar[dict[str, str]] = {}

    @classmethod
    def _key(cls, name: str) -> str:
        return cls.KEYS.get(name, name)

    @classmethod
    def _fields(cls) -> list:
        return [f for f in fields(cls) if f.name not in ("extra", "_absent")]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {cls._key(f.name): f for f in cls._fields()}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                kwargs[known[key].name] = cls._convert(known[key].name, value)
        absent = frozenset(
            f.name for k, f in known.items() if k not in data and not f.metadata.get("optional")
        )
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs, extra=extra, _absent=absent)

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        """A value read from JSON as the field holds it (a nested section's class)."""
        return value

    def _value(self, name: str, value: Any) -> Any:
        return value.to_dict() if isinstance(value, _Part) else value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self._fields():
            value = getattr(self, f.name)
            if f.name in self._absent or (value is None and f.metadata.get("optional")):
                continue
            out[self._key(f.name)] = self._value(f.name, value)
        out.update(self.extra)
        return out


def _optional() -> Any:
    return field(default=None, metadata={"optional": True})


def _extra() -> Any:
    return field(default_factory=dict)


def _absent() -> Any:
    return field(default=frozenset(), repr=False, compare=False)


@dataclass
class Resumed(_Part):
    """What a re-launch kept of the job's earlier, unfinished run."""

    batches_kept: int = 0
    images_kept: int = 0
    rows_kept: int = 0
    first_started: str | None = None
    extra: dict[str, Any] = _extra()
    _absent: frozenset[str] = _absent()


@dataclass
class DatasetInfo(_Part):
    """The dataset the job scored: its size, the items selected (``selected``: the images the job
    scores, unreadable ones already left out), the selection keys (``subset``: ``limit``, ``ids``,
    shards, ...) and the unreadable files ``skipped`` (``on_bad_sample=skip``)."""

    name: str = ""
    split: str = ""
    size: int = 0
    num_classes: int | None = None
    classes: int = 0  #: the dataset's own classes (a mapped head's num_classes is the model's)
    selected: int = 0
    subset: dict[str, Any] = field(
        default_factory=dict
    )  #: written inline, between selected and skipped
    skipped: list[dict[str, Any]] = field(default_factory=list)
    class_mapping: Any = None
    resize: Any = None
    extra: dict[str, Any] = _extra()
    _absent: frozenset[str] = _absent()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        subset = {k: v for k, v in data.items() if k in SUBSET_KEYS}
        rest = {k: v for k, v in data.items() if k not in SUBSET_KEYS}
        out = super().from_dict(rest)
        out.subset = subset
        out._absent = out._absent - {"subset"}
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in super().to_dict().items():
            if key == "subset":
                out.update(value)
            else:
                out[key] = value
        return out

    def class_count(self) -> int:
        """The dataset's own class count (records before ``classes``: ``num_classes``)."""
        if "classes" not in self._absent:
            return int(self.classes or 0)
        return int(self.num_classes or 0)


@dataclass
class MethodInfo(_Part):
    """The method: its config name, class and settings."""

    KEYS: ClassVar[dict[str, str]] = {"cls": "class"}

    name: str = ""
    cls: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = _extra()
    _absent: frozenset[str] = _absent()


@dataclass
class MetricInfo(_Part):
    """One metric as the job ran it: its class, what the class declares (``Metric.meta``: the
    direction of each score key, its range, the aggregation, ...), its settings and, for metrics
    with one, the x axis of its curves (``curve_x``)."""

    KEYS: ClassVar[dict[str, str]] = {"cls": "class"}

    cls: str = ""
    higher_is_better: bool = True
    category: str = ""
    citation: Any = None
    requires: list[str] = field(default_factory=list)
    aggregate: str = ""
    directions: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, list | None] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    curve_x: list[Any] | None = _optional()
    extra: dict[str, Any] = _extra()
    _absent: frozenset[str] = _absent()

    @classmethod
    def of(cls, class_name: str, meta: dict[str, Any], settings: dict[str, Any]) -> MetricInfo:
        """What the writer records of a metric: its class, ``Metric.meta()`` and its settings."""
        return cls.from_dict({"class": class_name, **meta, "settings": settings})

    def direction(self, key: str) -> str:
        """``higher``, ``lower`` or ``none`` (descriptive) for score ``key`` (records before
        per-key directions give one bool per metric)."""
        d = self.directions.get(key)
        if d is None:
            d = self.higher_is_better
        if isinstance(d, bool):
            return "higher" if d else "lower"
        return str(d)


@dataclass
class Record(_Part):
    """One job's ``record.json``. Optional fields are None (and not written) until the job has
    them: ``resumed`` only for a job continued from an earlier run; ``device`` and what was built
    (``model``, ``dataset``, ``method``, ``metrics``) once it got that far; ``rows``,
    ``flagged_maps``, ``forward`` and ``files`` when it completed (``rows`` also when it kept
    partial rows, 0 when skipped); ``reason`` and ``need`` when skipped; ``error``,
    ``partial_scores`` and ``batches_complete`` when it failed or was interrupted; ``cache``,
    ``timings``, ``throughput`` and ``wall_seconds`` when it ended."""

    schema: int = SCHEMA
    status: str | None = _optional()
    started: str | None = _optional()
    host: str | None = _optional()
    pid: int | None = _optional()
    config_hash: str | None = _optional()
    config: dict[str, Any] | None = _optional()
    choices: dict[str, Any] | None = _optional()
    versions: dict[str, str] | None = _optional()
    resumed: Resumed | None = _optional()
    device: dict[str, Any] | None = _optional()
    model: dict[str, Any] | None = _optional()
    dataset: DatasetInfo | None = _optional()
    method: MethodInfo | None = _optional()
    metrics: dict[str, MetricInfo] | None = _optional()
    rows: int | None = _optional()
    flagged_maps: dict[str, int] | None = _optional()
    forward: dict[str, Any] | None = _optional()
    files: dict[str, dict[str, Any]] | None = _optional()
    reason: str | None = _optional()
    need: str | None = _optional()
    error: str | None = _optional()
    partial_scores: str | None = _optional()
    batches_complete: int | None = _optional()
    cache: dict[str, Any] | None = _optional()
    timings: dict[str, float] | None = _optional()
    throughput: dict[str, Any] | None = _optional()
    wall_seconds: float | None = _optional()
    extra: dict[str, Any] = _extra()
    _absent: frozenset[str] = _absent()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON object; one without ``schema`` (the release before) is schema 0."""
        out = super().from_dict(data)
        if "schema" not in data:
            out.schema = 0
        out._absent = frozenset()
        return out

    @classmethod
    def of(cls, record: Record | Mapping[str, Any]) -> Record:
        """``record`` as a Record (a JSON object read as :func:`read_record` reads one)."""
        return record if isinstance(record, Record) else cls.from_dict(dict(record))

    @classmethod
    def _convert(cls, name: str, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if name == "resumed":
            return Resumed.from_dict(value)
        if name == "dataset":
            return DatasetInfo.from_dict(value)
        if name == "method":
            return MethodInfo.from_dict(value)
        if name == "metrics":
            return {
                k: MetricInfo.from_dict(v) if isinstance(v, dict) else v for k, v in value.items()
            }
        return value

    def _value(self, name: str, value: Any) -> Any:
        if name == "metrics" and isinstance(value, dict):
            return {k: v.to_dict() if isinstance(v, _Part) else v for k, v in value.items()}
        return super()._value(name, value)

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON object (``schema`` left out of a schema-0 record, as it was read)."""
        out = super().to_dict()
        if not self.schema:
            out.pop("schema")
        return out

    # --- what the readers ask of a record --------------------------------------------------------

    def metric_info(self, name: str) -> MetricInfo:
        """The record of metric ``name`` (an empty one when the job ran no such metric)."""
        info = (self.metrics or {}).get(name)
        return info if isinstance(info, MetricInfo) else MetricInfo()

    def images_timed(self) -> int:
        """The images this record's timings and wall time cover: the images the job selected
        (unreadable ones already left out), less those an earlier run of a resumed job scored.
        The one count every per-image time (the throughput figure and table, the loggers) divides
        by."""
        selected = self.dataset.selected if self.dataset is not None else 0
        kept = self.resumed.images_kept if self.resumed is not None else 0
        return int(selected or 0) - int(kept or 0)

    def device_name(self) -> str:
        """The device the job ran on (``cpu``, ``cuda:0``), "" when not recorded."""
        return str((self.device or {}).get("device", ""))

    def small(self, err: OSError) -> dict[str, Any]:
        """The small ``failed`` (or ``interrupted``) record written in place of this one when it
        cannot be written whole (``err``: a full disk)."""
        data = self.to_dict()
        small = {k: data[k] for k in ("schema", *SMALL_RECORD) if k in data}
        small["status"] = "interrupted" if self.status == "interrupted" else "failed"
        small["error"] = f"the record could not be written ({err.strerror or err})" + (
            f" after: {self.error}" if self.error else ""
        )
        return small


def write_record(out_dir: str | Path, record: Record) -> None:
    """Write ``record`` into ``out_dir`` atomically. When that fails (a full disk: the atomic write
    needs room for a second copy), write :meth:`Record.small` in place of the old record, whose
    blocks it frees first, so the folder never says ``running`` for a job that ended; then raise
    the error."""
    path = Path(out_dir) / RECORD
    try:
        atomic_write_json(path, record.to_dict())
    except OSError as err:
        log.error("could not write %s: %s", path, err)
        try:
            with path.open("w") as f:  # truncates first: the old record's blocks are reused
                json.dump(record.small(err), f)
        except OSError as again:
            log.error("could not write a small record either: %s", again)
        raise


def read_record(path_or_job: str | Path) -> Record:
    """The record of a job folder (or a ``record.json`` path); a :class:`CollateError` naming the
    folder when it cannot be read or is not a JSON object."""
    path = Path(path_or_job)
    job, file = (path.parent, path) if path.name == RECORD else (path, path / RECORD)
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CollateError(
            f"{job}: {RECORD} cannot be read ({type(err).__name__}: {first_line(err)}); the job "
            "was cut off while writing it or the file was changed: rerun the job or remove "
            "the folder."
        ) from None
    if not isinstance(data, dict):
        raise CollateError(f"{job}: {RECORD} is not a job record (a JSON object).")
    return Record.from_dict(data)
