"""The console's formatter for a sweep: the sweep's own lines bare, as a person reads them; the rest as Hydra's.

The sweeper says what it does (its start-up lines, one line per trial, its last line) through the logger
`mnist_study.sweep`, so that Hydra's job log files get them with a timestamp. On the console a timestamp and a
logger name on every progress line only push the numbers off the screen, so this formatter writes those INFO
records as their bare message and every other record in the format it is given. Chosen by
conf/hydra/job_logging/mnist_study.yaml and conf/hydra/hydra_logging/mnist_study.yaml.
"""

from __future__ import annotations

import logging

SWEEP_LOGGER = "mnist_study.sweep"


class SweepConsoleFormatter(logging.Formatter):
    """`fmt` for every record but the sweep's own INFO lines, which are written as they are."""

    def format(self, record: logging.LogRecord) -> str:
        own = record.name == SWEEP_LOGGER or record.name.startswith(f"{SWEEP_LOGGER}.")
        if own and record.levelno == logging.INFO:
            return record.getMessage()
        return super().format(record)
