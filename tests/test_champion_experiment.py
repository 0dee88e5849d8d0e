"""The champion's experiment file carries the report's forwarded overrides that change the numbers, so that
`python src/run.py <study>_champion` trains what the report measured. No training: the file is written and composed
back with Hydra, as `python src/run.py` would compose it."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from conftest import composed
from mnist_study.report.registry import carried, write_champion_experiment
from mnist_study.report.results import Row
from mnist_study.report.selection import Candidate
from mnist_study.report.stats import Summary
from test_report_reference import DEFAULT_PRECISION, OTHER_PRECISION

# What `python src/report.py study_name=frontier ...` forwards to its refits: arithmetic, data and epochs (which
# change the numbers), the output and the store (which do not).
FORWARDED = (
    f"train.precision={OTHER_PRECISION}",
    "data.train_subset=2000",
    "train.epochs=2",
    "train.verbose=0",
    "tracking.experiment=frontier",
    "tracking.uri=sqlite:///elsewhere.db",
    "~train.intra_op_threads",
)
TRIAL = ("model.layers=2", "model.units=1024", "model.units_2=512", "train.epochs=14", "optimizer=adam")


def champion_config(folder: Path, forwarded: tuple[str, ...]) -> tuple[str, DictConfig]:
    """Write the frontier study's champion (a 2-layer trial) into `folder`, then compose it back."""
    summary = Summary(n=5, mean=0.988, std=0.001, ci_low=0.987, ci_high=0.989)
    winner = Row(Candidate("trial 7", "variant", TRIAL), (), summary, summary, None, 5, "better")
    command = "python src/report.py study_name=frontier " + " ".join(forwarded)
    path = write_champion_experiment(folder, "frontier", winner, command, forwarded)
    config = composed(f"hydra.searchpath=[file://{folder.parent}]", f"+{folder.name}=frontier_champion")
    return path.read_text(), config


def test_only_the_overrides_that_change_the_numbers_are_carried() -> None:
    assert carried(FORWARDED) == (f"train.precision={OTHER_PRECISION}", "data.train_subset=2000", "train.epochs=2")
    assert carried(("+train.label_smoothing=0.1",)) == ("+train.label_smoothing=0.1",)


def test_the_champion_retrains_under_the_reports_arithmetic_data_and_epochs(tmp_path: Path) -> None:
    text, config = champion_config(tmp_path, FORWARDED)
    assert (
        f"# With the report's own train.precision={OTHER_PRECISION} data.train_subset=2000 train.epochs=2" in text
    )
    assert (config.model.layers, config.model.units, config.model.units_2) == (2, 1024, 512)
    assert config.optimizer.name == "adam"
    assert config.train.precision == OTHER_PRECISION and config.data.train_subset == 2000
    # The report's forwarded epochs won over the trial's own 14 in every refit, so they win here too.
    assert config.train.epochs == 2
    # Neither where the report logged nor what it printed is part of the champion (only its heading quotes them).
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert "tracking" not in body and "verbose" not in body and "elsewhere" not in body
    assert config.tracking.experiment == "mnist-mlp" and config.train.verbose == 2


def test_without_forwarded_overrides_the_champion_is_the_trial_alone(tmp_path: Path) -> None:
    text, config = champion_config(tmp_path, ())
    assert "With the report's own" not in text
    assert config.train.precision == DEFAULT_PRECISION and config.train.epochs == 14
    assert config.data.train_subset is None
