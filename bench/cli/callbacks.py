"""The Hydra callbacks of conf/hydra/: every job of a sweep checked before the first starts, the
sweep folder pinned where the sweep is launched, the sweep collated when it ends. Hydra turns an
exception raised in a callback into a warning (and exit 0), so each reports in one line and exits
itself."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.config.launchers import pin_sweep_dir
from bench.config.validate import check_sweep, keep_snapshot
from bench.core.errors import ConfigError
from bench.engine.io import RECORD
from bench.results.collate import CollateError, collate, find_job_dirs, write_summary
from bench.results.figure_base import jobs_of
from bench.results.report import REPORT, write_report

log = logging.getLogger("bench")


class ValidateOnMultirunStart(Callback):
    """Compose and validate every job of a sweep before the first one starts
    (:func:`bench.config.validate.check_sweep`), so a bad value in the 50th job fails in seconds;
    keep the config snapshot the jobs compose from in the sweep folder."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_sweep(config)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from err
        keep_snapshot(Path(config.hydra.sweep.dir))


class PinSweepDir(Callback):
    """:func:`bench.config.launchers.pin_sweep_dir` when the sweep starts, before the launcher is
    created (its ``submitit_folder`` is below the sweep folder) and composes any job's config."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        pin_sweep_dir(config)


class CollateOnMultirunEnd(Callback):
    """Hydra callback: collate the sweep folder when a multirun ends; exit 1 if any job did not
    complete (each is named on stderr), if no job left a row, or if the collation itself fails
    (one line saying why: Hydra would turn an exception here into a warning and exit 0); 2 if a
    job's files do not match its record. A job skipped because its method cannot apply to its
    model (``unfit=skip``) is listed (NOT APPLICABLE) and does not fail the sweep. Besides the
    summary it writes the figures and ``report.html`` (:mod:`bench.results.report`)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        try:
            self.collate(root)
        except SystemExit:
            raise
        except Exception as err:  # noqa: BLE001 - any failure is one line and a failed sweep
            where = f" ({err.filename})" if isinstance(err, OSError) and err.filename else ""
            what = err.strerror if isinstance(err, OSError) and err.strerror else err
            print(
                f"error: the sweep's collation in {root} failed{where}: {type(err).__name__}: "
                f"{' '.join(str(what).split())}; its jobs' folders are intact (bench-collate {root}).",
                file=sys.stderr,
            )
            raise SystemExit(1) from None

    @staticmethod
    def collate(root: Path) -> None:
        try:
            collation = collate([root])
        except CollateError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        if not find_job_dirs([root]):  # e.g. jobs that wrote somewhere else (another machine)
            print(f"error: no job of this sweep left a {RECORD} in {root}.", file=sys.stderr)
            raise SystemExit(1)
        summary, table = write_summary(root, collation)
        print(f"\nSummary of {root} (mean [95% bootstrap interval]):\n\n{table}\n")
        loaded = (jobs_of(collation), collation)  # one collation for the figures and the report
        if not summary.empty:
            from bench.results.figures import write_figures

            try:  # the figures (PNG; bench-figures also writes PDF): never fail the sweep
                write_figures([root], root / "figures", formats=("png",), loaded=loaded)
            except Exception as err:
                log.error("figures of %s failed: %s", root, err)
        try:  # the report (incomplete jobs included): never fail the sweep
            written = write_report([root], root / REPORT, loaded=loaded)
        except Exception as err:
            log.error("the report of %s failed: %s", root, err)
        else:
            print(f"Report: {written.path} (open it in a browser)")
        if not summary.empty:
            print(f"Written: {root}/summary.md, summary.csv, summary.png, scores_all.csv, figures/")
        for line in collation.report():
            print(line, file=sys.stderr)
        if collation.incomplete:
            raise SystemExit(1)
        if collation.rows.empty:
            why = (
                f": every job's method cannot apply to its model ({len(collation.not_applicable)} "
                "NOT APPLICABLE)"
                if collation.not_applicable and not collation.empty
                else ""
            )
            print(f"error: no job of the sweep in {root} scored any image{why}.", file=sys.stderr)
            raise SystemExit(1)
