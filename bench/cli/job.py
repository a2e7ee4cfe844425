"""The Hydra task of ``bench``: run one job (bench/engine/run.py) and report it: one line for a
configuration error, an out-of-memory or a disk error; the table of a single run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench.config.validate import user_error
from bench.core.context import is_out_of_memory
from bench.engine.io import RECORD
from bench.engine.record import Record
from bench.engine.run import logger_options, run
from bench.results.collate import collate, format_table, summarise
from bench.results.loggers import log_job

log = logging.getLogger("bench")


def task(cfg: DictConfig) -> None:
    """Hydra task: run one cell; a configuration error becomes one line on stderr, not a traceback."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        record = Record.of(run(cfg, out_dir))
    except Exception as err:
        user = user_error(err)
        if user is not None:
            if multirun:  # the other jobs go on; the collation callback reports the failure
                log.error("%s", user)
                return
            print(f"error: {user}", file=sys.stderr)
            sys.exit(2)
        if multirun:
            log.exception("job failed: %s", err)
            return
        if is_out_of_memory(err):  # even one image per chunk, or outside a chunked loop
            print(
                f"error: out of memory ({type(err).__name__}) in {out_dir}; lower batch_size "
                "(images per attribution batch) or the method's internal batch size; the job "
                f"failed and its {RECORD} says what was kept.",
                file=sys.stderr,
            )
            sys.exit(1)
        if isinstance(err, OSError):  # a full disk, a lost mount: say where, not a traceback
            where = f" ({err.filename})" if err.filename else ""
            print(
                f"error: {err.strerror or err}{where} while writing {out_dir}; the job failed and "
                f"its {RECORD} says what was kept.",
                file=sys.stderr,
            )
            sys.exit(1)
        raise
    if record.status != "skipped":  # a skipped job logged its one line
        log.info("%d rows, %.1f s -> %s", record.rows, record.wall_seconds, out_dir)
    if record.status == "completed":  # also a job already complete: log it, not rerun it
        options = logger_options(cfg)
        try:
            where = log_job(out_dir, **options)
            if where is not None:
                log.info("%s events -> %s", options["kind"], where)
        except Exception as err:  # the results are written; only the logging failed
            log.error("logger=%s failed for %s: %s", options["kind"], out_dir, err)
    if not multirun:
        collation = collate([out_dir])
        print(format_table(summarise(collation.rows)))
        for line in collation.report():
            print(line, file=sys.stderr)
