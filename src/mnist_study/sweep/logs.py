"""Where a sweep's own lines go: bare on the console, timestamped in the sweep's log file and each trial's.

The sweeper says what it does (its start-up lines, one line per trial, its last line) through the logger
`mnist_study.sweep`. Hydra's logging config decides where records go; the sweep experiments choose
conf/hydra/hydra_logging/mnist_study.yaml (the sweep process) and conf/hydra/job_logging/mnist_study.yaml (each
job), which use the two classes here:

- `SweepConsoleFormatter`: on the console, a timestamp and a logger name on every progress line only push the
  numbers off the screen, so the sweep's INFO records are written as their bare message, every other record in
  Hydra's format.
- `SweepLogFile`: the sweep's log file, `<hydra.sweep.dir>/sweep.log`, every line with its time; its folder is made
  when the first line arrives (Hydra configures logging before the sweep makes its folder).

`also_in_job_log` appends a trial's progress line to its job's own log file as well.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SWEEP_LOGGER = "mnist_study.sweep"


class SweepConsoleFormatter(logging.Formatter):
    """`fmt` for every record but the sweep's own INFO lines, which are written as they are."""

    def format(self, record: logging.LogRecord) -> str:
        own = record.name == SWEEP_LOGGER or record.name.startswith(f"{SWEEP_LOGGER}.")
        if own and record.levelno == logging.INFO:
            return record.getMessage()
        return super().format(record)


class SweepLogFile(logging.FileHandler):
    """A log file opened (and its folder made) only when the first record arrives."""

    def __init__(self, filename: str, **options: Any) -> None:
        super().__init__(filename, delay=True, **options)

    def _open(self) -> IO[str]:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def job_log_file(hydra_cfg: DictConfig | None) -> tuple[Path, str] | None:
    """A finished job's log file and its line format, as its `hydra.job_logging` wrote them; None without one."""
    if hydra_cfg is None:
        return None
    try:
        handler = OmegaConf.select(hydra_cfg, "hydra.job_logging.handlers.file")
        if handler is None or "filename" not in handler:
            return None
        formatter = OmegaConf.select(hydra_cfg, f"hydra.job_logging.formatters.{handler.get('formatter')}")
        line_format = formatter.get("format") if formatter is not None else None
        return Path(str(handler.filename)), str(line_format or logging.BASIC_FORMAT)
    except OmegaConfBaseException:  # A custom job logging whose keys do not resolve outside the job: no file.
        return None


@contextlib.contextmanager
def also_in_job_log(hydra_cfg: DictConfig | None) -> Iterator[None]:
    """While inside, the sweep's records are appended to the finished job's own log file too, so that the file of
    the trial's job ends with the trial's verdict (Hydra's launcher restores its own logging after each job)."""
    found = job_log_file(hydra_cfg)
    if found is None or not found[0].parent.is_dir():
        yield
        return
    handler = logging.FileHandler(found[0])
    handler.setFormatter(logging.Formatter(found[1]))
    sweep = logging.getLogger(SWEEP_LOGGER)
    sweep.addHandler(handler)
    try:
        yield
    finally:
        sweep.removeHandler(handler)
        handler.close()
