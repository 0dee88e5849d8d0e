"""Where the sweep's lines go: bare on the console, with their time in the sweep's log file and a job's log file.

The classes are the ones the logging configs in conf/hydra/*_logging/mnist_study.yaml name; here they are driven
through Python's own `logging.config.dictConfig`, as Hydra drives them. `test_time_budget.py` checks the files a
real sweep writes.
"""

from __future__ import annotations

import io
import logging
import logging.config
from pathlib import Path

from omegaconf import OmegaConf

from conftest import PROJECT_ROOT
from mnist_study.sweep.logs import also_in_job_log, job_log_file

FILE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def configure(stream: io.StringIO, log_file: Path) -> None:
    """The sweep process's logging as conf/hydra/hydra_logging/mnist_study.yaml sets it, writing to `stream`."""
    config = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/hydra/hydra_logging/mnist_study.yaml"))
    config["handlers"]["console"]["stream"] = stream  # type: ignore[index]
    config["handlers"]["file"]["filename"] = str(log_file)  # type: ignore[index]
    logging.config.dictConfig(config)  # type: ignore[arg-type]


def test_the_sweep_s_lines_are_bare_on_the_console_and_timestamped_in_the_file(tmp_path: Path) -> None:
    console, log_file = io.StringIO(), tmp_path / "not" / "yet" / "sweep.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(console, log_file)
        assert not log_file.parent.exists()  # Nothing is made before the first line.
        logging.getLogger("mnist_study.sweep.sweeper").info("trial %d/%d COMPLETE", 3, 20)
        logging.getLogger("mnist_study.sweep.sweeper").warning("could not write the study summary")
        logging.getLogger("mnist_study.data").info("MNIST read")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved[0], saved[1]
    lines = console.getvalue().splitlines()
    assert lines[0] == "trial 3/20 COMPLETE"
    assert lines[1].endswith("][HYDRA] could not write the study summary") and lines[1].startswith("[20")
    assert lines[2].endswith("][HYDRA] MNIST read")
    written = log_file.read_text().splitlines()
    assert written[0].endswith("][mnist_study.sweep.sweeper][INFO] - trial 3/20 COMPLETE")
    assert written[0].startswith("[20") and len(written) == 3


def test_a_trial_s_line_also_ends_its_job_s_log_file(tmp_path: Path) -> None:
    job = tmp_path / "multirun" / "7"
    job.mkdir(parents=True)
    (job / "run.log").write_text("[earlier] the job's own lines\n")
    hydra_cfg = OmegaConf.create(
        {
            "hydra": {
                "runtime": {"output_dir": str(job)},
                "job": {"name": "run"},
                "job_logging": {
                    "formatters": {"simple": {"format": FILE_FORMAT}},
                    "handlers": {
                        "file": {
                            "formatter": "simple",
                            "filename": "${hydra.runtime.output_dir}/${hydra.job.name}.log",
                        }
                    },
                },
            }
        }
    )
    assert job_log_file(hydra_cfg) == (job / "run.log", FILE_FORMAT)
    sweep = logging.getLogger("mnist_study.sweep.sweeper")
    level = sweep.level
    sweep.setLevel(logging.INFO)
    try:
        with also_in_job_log(hydra_cfg):
            sweep.info("trial 7/20 PRUNED at epoch 5")
        sweep.info("study S: 20/20 trials have a verdict")  # After the block: not the job's line.
    finally:
        sweep.setLevel(level)
    lines = (job / "run.log").read_text().splitlines()
    assert len(lines) == 2 and lines[-1].endswith(
        "[mnist_study.sweep.sweeper][INFO] - trial 7/20 PRUNED at epoch 5"
    )
    # A job logging without a file (Hydra's `disabled`) and a missing config give no file.
    assert job_log_file(OmegaConf.create({"hydra": {"job_logging": {"handlers": {}}}})) is None
    assert job_log_file(None) is None
