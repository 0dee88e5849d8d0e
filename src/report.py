"""Entry point: `python src/report.py [study_name=S] [storage=URL] [seeds=5] [top_k=3] [overrides...]`.

Refits the tutorial's protocol, the baseline and the study's best trials with several seeds, compares them on the
test set with error bars, re-derives one logged run, and writes experiments/reports/<study>/report.{md,html}.
"""

from __future__ import annotations

import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import mnist_study.paths  # noqa: F401  (registers the ${project_root:} resolver)

# The report's own overrides that also apply to every refit (shrunk data, fewer epochs, another store).
FORWARDED_PREFIXES = ("data.", "train.", "tracking.")


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    """Build the report; a bad value or a missing study ends with one line and a non-zero exit.

    SIGTERM (what a scheduler sends at a time limit or a cancel) ends it as Ctrl-C does, its runs closed KILLED;
    a SIGKILL leaves them to the next report (see `mnist_study.report.strays`).
    """
    from mnist_study.checks import ConfigError
    from mnist_study.report import build, selection
    from mnist_study.sweep.sweeper import interrupt

    signal.signal(signal.SIGTERM, interrupt)

    given = list(HydraConfig.get().overrides.task)
    forwarded = [item for item in given if item.lstrip("+~").startswith(FORWARDED_PREFIXES)]
    try:
        build.build(cfg, forwarded, given)
    except (selection.ReportError, ConfigError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The report and its refit have closed their runs KILLED; a traceback would say nothing more.
        print("interrupted: run the same command again to resume (finished refits are reused)", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)  # What a shell reports for Ctrl-C, as `python src/run.py` exits.
