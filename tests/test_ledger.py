"""The trial ledger draws what the sweeper drew before it owned the trials, and applies the budget rule.

`default_study_draws.json` holds the first 24 trials of the default study (experiments/sweep.yaml with the
sweeper's default sampler, and TPE's 10 start-up trials as the study then had), as the sweep loop asked them before
the ledger existed, each told a value computed from its parameters. The same asks through the ledger must draw the
same parameters, bit for bit: TPE's start-up trials and the modelled ones after them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import PROJECT_ROOT
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.sampling import make_sampler
from mnist_study.sweep.schema import (
    BASELINE_ATTR,
    ENQUEUED_ATTR,
    RETRY_OF,
    UNCOUNTED,
    WARM_START_ATTR,
    is_counted,
)
from mnist_study.sweep.space import SearchSpace, parse_space
from mnist_study.sweep.storage import open_storage
from mnist_study.sweep.sweeper import enqueue_baseline

DRAWS = Path(__file__).parent / "default_study_draws.json"
BASELINE = {
    "model.units": 512,
    "optimizer": "rmsprop",
    "train.epochs": 5,
    "optimizer.learning_rate": 1e-3,
    "model.dropout": 0.0,
    "train.batch_size": 128,
}


def default_space() -> tuple[SearchSpace, dict[str, Any]]:
    """The default study's space and sampler config, read from the files that state them and merged as Hydra
    merges them: the sweeper's defaults, then the study's own settings."""
    sweeper = OmegaConf.load(PROJECT_ROOT / "experiments" / "sweep.yaml").hydra.sweeper
    defaults = OmegaConf.load(PROJECT_ROOT / "conf" / "hydra" / "sweeper" / "mnist_study.yaml")
    space = parse_space(OmegaConf.to_container(sweeper.params), [], OmegaConf.to_container(sweeper.conditional))
    sampler = OmegaConf.merge(defaults.sampler, sweeper.get("sampler") or {})
    return space, OmegaConf.to_container(sampler)


def recorded_sampler(sampler: dict[str, Any]) -> dict[str, Any]:
    """The default study's sampler as it was when the draws were recorded: TPE's 10 start-up trials."""
    return {**sampler, "n_startup_trials": 10}


def made_up_value(params: dict[str, Any]) -> float:
    """A value that depends on the parameters, so TPE's modelled draws depend on the earlier ones."""
    return 0.95 + 0.0001 * params["train.epochs"] - abs(params.get("model.dropout", 0) - 0.2) * 0.01


def new_ledger(folder: Path, name: str, n_trials: int) -> TrialLedger:
    """A new study on a SQLite storage, and its ledger with a budget of `n_trials`."""
    storage = open_storage(f"sqlite:///{folder}/optuna.db")
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    return TrialLedger(study, storage, n_trials=n_trials)


def test_the_ledger_draws_the_default_study_as_the_sweeper_drew_it_before(tmp_path: Path) -> None:
    space, sampler = default_space()
    ledger = new_ledger(tmp_path, "mnist-mlp", n_trials=24)
    study = ledger.study
    enqueue_baseline(ledger, space, BASELINE)
    study.sampler = make_sampler(recorded_sampler(sampler))
    drawn = []
    for _ in range(24):
        trial = ledger.ask(space)
        drawn.append(trial.params)
        assert ledger.tell(trial, TrialState.COMPLETE, made_up_value(trial.params), None) is not None
    assert drawn == json.loads(DRAWS.read_text())
    assert ledger.count() == 24 and ledger.is_full()


def test_a_trial_given_back_is_uncounted_and_runs_again_with_the_same_params(tmp_path: Path) -> None:
    space, _ = default_space()
    ledger = new_ledger(tmp_path, "given-back", n_trials=1)
    study = ledger.study
    first = ledger.ask(space)
    assert not ledger.is_surplus(first) and ledger.is_full()
    ledger.give_back(first, "interrupted", requeue=True)
    assert ledger.count() == 0 and not ledger.is_full()
    again = ledger.ask(space)
    assert again.params == first.params
    frozen = study.get_trials()
    assert frozen[0].state == TrialState.FAIL and UNCOUNTED in frozen[0].user_attrs and not is_counted(frozen[0])
    assert frozen[1].user_attrs[RETRY_OF] == first.number
    # A second asked trial ranks beyond a budget of one while the first may still count.
    surplus = ledger.ask(space)
    assert ledger.is_surplus(surplus)


def test_known_configurations_run_first_marked_and_a_warm_start_copy_never_counts(tmp_path: Path) -> None:
    space, _ = default_space()
    ledger = new_ledger(tmp_path, "known", n_trials=2)
    study = ledger.study
    by_hand = {**BASELINE, "model.units": 1024}
    ledger.enqueue(BASELINE, baseline=True)
    ledger.enqueue(by_hand)
    earlier = optuna.create_study(direction="maximize")
    earlier.enqueue_trial({**BASELINE, "model.units": 2048})
    earlier.optimize(lambda trial: (space.sample(trial), 0.97)[1], n_trials=1)
    (finished,) = earlier.get_trials()
    ledger.add_copy(finished, space.distributions_for(finished.params), "elsewhere#earlier")

    copy = study.get_trials()[-1]
    assert copy.state == TrialState.COMPLETE and copy.value == 0.97 and copy.params == finished.params
    assert copy.user_attrs == {WARM_START_ATTR: "elsewhere#earlier/0"} and not is_counted(copy)
    assert ledger.count() == 0 and not ledger.is_full()
    first, second = ledger.ask(space), ledger.ask(space)
    assert (first.params, second.params) == (BASELINE, by_hand)
    marks = [study.get_trials()[trial.number].user_attrs for trial in (first, second)]
    assert marks == [{BASELINE_ATTR: True}, {ENQUEUED_ATTR: True}]
