"""Unit tests of the sweeper's pure parts: grammar to distributions, direction, baseline, verdicts (no TF)."""

from __future__ import annotations

import math
import subprocess
import sys

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from conftest import composed
from mnist_study.metrics import direction_for
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.sampling import TrialSeededSampler, trial_seed
from mnist_study.sweep.schema import BASELINE_ATTR
from mnist_study.sweep.space import format_value, in_distribution, parse_space
from mnist_study.sweep.stores import job_exception, job_store_error
from mnist_study.sweep.sweeper import baseline_values, enqueue_baseline, format_duration, quote, verdict


def default_study() -> tuple[dict[str, str], dict]:
    """The default study's space as `experiments/sweep.yaml` gives it, and the baseline as `conf/` composes it."""
    config = composed("+experiments=sweep", hydra=True)
    params = OmegaConf.to_container(config.hydra.sweeper.params)
    return params, baseline_values(config, parse_space(params, []))


SWEEP_PARAMS, BASELINE = default_study()


@pytest.mark.slow
def test_the_sweeper_logic_does_not_import_tensorflow() -> None:
    # Hydra imports the plugin at every start-up and the sweeper plans before any job runs; both must stay light.
    code = (
        "import sys, hydra_plugins.mnist_study_sweeper.mnist_study_sweeper, mnist_study.sweep.sweeper;"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("choice(rmsprop, adam)", CategoricalDistribution(["rmsprop", "adam"])),
        ("choice(64, 128, 256)", CategoricalDistribution([64, 128, 256])),
        ("1,2,3", CategoricalDistribution([1, 2, 3])),
        ("range(1, 31)", IntDistribution(1, 30)),
        ("range(2, 11, 4)", IntDistribution(2, 10, step=4)),
        ("range(0.0, 0.5, 0.25)", FloatDistribution(0.0, 0.25, step=0.25)),
        ("interval(0, 0.5)", FloatDistribution(0.0, 0.5)),
        ("int(interval(1, 30))", IntDistribution(1, 30)),
        ("tag(log, int(interval(32, 4096)))", IntDistribution(32, 4096, log=True)),
        ("tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
        ("tag(log, range(1, 10))", IntDistribution(1, 9, log=True)),
    ],
)
def test_sweep_grammar_maps_to_optuna_distributions(expression: str, expected: object) -> None:
    space = parse_space({"key": expression}, [])
    assert space.distributions == {"key": expected}


@pytest.mark.parametrize("expression", ["tag(log, choice(1, 2))", "range(5, 1)", "glob(*)"])
def test_unusable_sweeps_are_rejected_with_a_reason(expression: str) -> None:
    with pytest.raises(ValueError, match="key="):
        parse_space({"key": expression}, [])


def test_the_default_space_searches_the_missions_three_around_the_tutorials_network() -> None:
    space = parse_space(SWEEP_PARAMS, [])
    # Width, optimizer and epochs are searched, and the tutorial's network lies inside, so trial 0 is the baseline.
    assert {"model.units", "optimizer", "train.epochs"} <= set(space.distributions)
    assert {key: BASELINE[key] for key in space.distributions} == BASELINE
    assert (BASELINE["model.units"], BASELINE["optimizer"], BASELINE["train.epochs"]) == (512, "rmsprop", 5)
    assert space.contains(BASELINE)


def test_command_line_sweep_replaces_a_space_and_a_plain_value_fixes_it() -> None:
    arguments = ["+experiments=sweep", "model.units=choice(64,96)", "optimizer=adam", "data.train_subset=3000"]
    space = parse_space(SWEEP_PARAMS, arguments)
    assert space.distributions["model.units"] == CategoricalDistribution([64, 96])
    assert "optimizer" not in space.distributions
    assert space.fixed == {"optimizer": "optimizer=adam"}
    assert space.passthrough == ("+experiments=sweep", "data.train_subset=3000")
    overrides = space.job_overrides({"model.units": 64, "optimizer.learning_rate": 0.000123})
    assert overrides[:3] == ["model.units=64", "optimizer.learning_rate=0.000123", "optimizer=adam"]


def test_a_new_sweep_on_the_command_line_adds_a_dimension() -> None:
    space = parse_space({"model.units": "choice(8, 16)"}, ["data.train_subset=range(1000, 3001, 1000)"])
    assert space.distributions["data.train_subset"] == IntDistribution(1000, 3000, step=1000)


@pytest.mark.parametrize("value", [1.2345678901234567e-05, 0.1, 512, "rmsprop", True, 1e12])
def test_values_round_trip_through_the_override_grammar(value: object) -> None:
    (override,) = OverridesParser.create().parse_overrides([f"key={format_value(value)}"])
    assert override.value() == value
    assert type(override.value()) is type(value)


@pytest.mark.parametrize(
    ("value", "distribution", "inside"),
    [
        (512, IntDistribution(32, 4096, log=True), True),
        (5000, IntDistribution(32, 4096, log=True), False),
        (5, IntDistribution(2, 10, step=4), False),
        (0.001, FloatDistribution(1e-4, 1e-2, log=True), True),
        (0.0, FloatDistribution(0.0, 0.5), True),
        (0.3, FloatDistribution(0.0, 0.5, step=0.25), False),
        ("rmsprop", CategoricalDistribution(["rmsprop", "adam"]), True),
        ("128", CategoricalDistribution([64, 128]), False),
        (None, FloatDistribution(0.0, 0.5), False),
        (True, IntDistribution(0, 3), False),
    ],
)
def test_membership(value: object, distribution: optuna.distributions.BaseDistribution, inside: bool) -> None:
    assert in_distribution(value, distribution) is inside


@pytest.mark.parametrize(
    ("objective", "direction"),
    [("val_accuracy", "maximize"), ("accuracy", "maximize"), ("val_loss", "minimize"), ("loss", "minimize")],
)
def test_direction_follows_the_objective(objective: str, direction: str) -> None:
    assert direction_for(objective) == direction


def test_an_objective_of_unknown_direction_is_an_error() -> None:
    with pytest.raises(ValueError, match="f1_score"):
        direction_for("f1_score")


def in_memory_ledger() -> TrialLedger:
    storage = optuna.storages.InMemoryStorage()
    return TrialLedger(optuna.create_study(storage=storage, direction="maximize"), storage)


def test_baseline_is_enqueued_as_trial_0_when_inside_the_space() -> None:
    ledger, space = in_memory_ledger(), parse_space(SWEEP_PARAMS, [])
    assert enqueue_baseline(ledger, space, BASELINE)
    trial = ledger.study.ask(space.distributions)
    assert trial.number == 0
    assert trial.params == BASELINE
    assert ledger.study.get_trials()[0].user_attrs == {BASELINE_ATTR: True}


def test_baseline_outside_the_space_is_not_enqueued_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    ledger = in_memory_ledger()
    study = ledger.study
    space = parse_space(SWEEP_PARAMS, ["model.units=choice(64,96)"])
    with caplog.at_level("INFO", logger="mnist_study.sweep"):
        assert not enqueue_baseline(ledger, space, BASELINE)
    assert study.get_trials() == []
    said = [record.getMessage() for record in caplog.records if record.name.startswith("mnist_study.sweep")]
    assert said == ["baseline not enqueued as trial 0: outside the search space (model.units=512)"]


def job_return(status: JobStatus, value: object) -> JobReturn:
    result = JobReturn(status=status)
    result.return_value = value
    return result


@pytest.mark.parametrize(
    ("status", "value", "state", "reason"),
    [
        (JobStatus.COMPLETED, 0.98, TrialState.COMPLETE, None),
        (JobStatus.COMPLETED, math.nan, TrialState.FAIL, "objective is nan, not a finite number"),
        (JobStatus.COMPLETED, None, TrialState.FAIL, "objective is None, not a finite number"),
        (JobStatus.FAILED, optuna.TrialPruned("pruned at epoch 2"), TrialState.PRUNED, None),
        (
            JobStatus.FAILED,
            FloatingPointError("loss became nan"),
            TrialState.FAIL,
            "FloatingPointError: loss became nan",
        ),
    ],
)
def test_verdict_of_a_job(status: JobStatus, value: object, state: TrialState, reason: str | None) -> None:
    told_state, told_value, told_reason = verdict(job_return(status, value))
    assert (told_state, told_reason) == (state, reason)
    assert told_value == (value if state == TrialState.COMPLETE else None)


@pytest.mark.parametrize(
    ("status", "value", "store_failure"),
    [
        (JobStatus.COMPLETED, 0.98, False),
        (JobStatus.FAILED, MlflowException("database is locked", TEMPORARILY_UNAVAILABLE), True),
        (JobStatus.FAILED, MlflowException("no such run", RESOURCE_DOES_NOT_EXIST), False),
        (JobStatus.FAILED, OperationalError("SELECT 1", {}, ConnectionRefusedError()), True),
        (JobStatus.FAILED, optuna.TrialPruned("pruned at epoch 2"), False),
        (JobStatus.FAILED, FloatingPointError("loss became nan"), False),
    ],
)
def test_a_failing_store_is_told_apart_from_a_failing_trial(
    status: JobStatus, value: object, store_failure: bool
) -> None:
    result = job_return(status, value)
    assert job_exception(result) is (None if status == JobStatus.COMPLETED else value)
    assert job_store_error(result) is (value if store_failure else None)


@pytest.mark.parametrize(
    "url", ["sqlite:////tmp/x/optuna.db", "postgresql://user:p'a\\ss@host/db", "/tmp/a b/o.journal", "end\\"]
)
def test_quoted_override_values_survive_hydras_parser(url: str) -> None:
    (override,) = OverridesParser.create().parse_overrides([f"trial.storage={quote(url)}"])
    assert override.value() == url


@pytest.mark.parametrize(("seconds", "text"), [(12.4, "12s"), (300, "5m"), (3900, "1h05m")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_neighbouring_sampler_seeds_draw_different_trials() -> None:
    # With `seed + trial number`, seed 1 drew at trial n what seed 0 drew at trial n + 1.
    draws = {seed: [trial_seed(seed, number) for number in range(30)] for seed in (0, 1)}
    assert not set(draws[0]) & set(draws[1])
    assert len(set(draws[0])) == 30


SPACE_FOR_SAMPLERS = {
    "model.units": optuna.distributions.IntDistribution(32, 4096, log=True),
    "optimizer": optuna.distributions.CategoricalDistribution(["rmsprop", "adam", "sgd"]),
}


def seeded(sampler: type[optuna.samplers.BaseSampler], seed: int = 0) -> TrialSeededSampler:
    return TrialSeededSampler(lambda trial_seed: sampler(seed=trial_seed), seed)


def test_two_workers_asking_at_once_draw_different_trials() -> None:
    # Both workers build their sampler from the same config at the same moment, as two sweep processes started
    # together do; the trial numbers the storage hands out are what sets their draws apart.
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(study_name="s", storage=storage, sampler=seeded(optuna.samplers.RandomSampler))
    second = optuna.load_study(study_name="s", storage=storage, sampler=seeded(optuna.samplers.RandomSampler))
    a, b = first.ask(SPACE_FOR_SAMPLERS), second.ask(SPACE_FOR_SAMPLERS)
    assert (a.number, b.number) == (0, 1)
    assert a.params != b.params


def test_a_seeded_study_draws_the_same_trials_when_run_again() -> None:
    def run() -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=seeded(optuna.samplers.TPESampler))
        # Past TPE's ten random start-up trials, so that the model-based proposals are compared too.
        study.optimize(lambda trial: math.log(trial.suggest_int("units", 32, 4096, log=True)), n_trials=14)
        return [trial.params for trial in study.trials]

    first, second = run(), run()
    assert first == second
    assert len({params["units"] for params in first}) > 10
