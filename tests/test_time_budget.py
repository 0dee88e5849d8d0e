"""A study with a time budget and a size constraint, through the real command line on a tiny MNIST subset.

One command runs twice on the same stores: first with `hydra.sweeper.timeout_s`, then without it, as a user resumes
a study that ran out of time. Both carry `constraints: {n_params: "<= 300000"}` (the smoke baseline's 512 units
are 407 050 parameters: infeasible). The tests read what the two runs left: the lines they printed, the log files,
the Optuna study and the MLflow runs.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from conftest import run_cli, store_overrides
from mnist_study.report.selection import top_trials
from mnist_study.sweep.constraints import is_feasible
from mnist_study.sweep.schema import MLFLOW_RUN_ATTR, count_verdicts
from mnist_study.sweep.storage import open_storage

pytestmark = pytest.mark.slow

N_TRIALS = 4
# Shorter than any worker's way to its last trial: the first trial alone imports TensorFlow (7-12 s), so the budget
# runs out with trials left on any machine, and the stop is always there to see.
TIMEOUT_S = 10
BOUND = 300_000
PROGRESS = re.compile(r"^trial (\d+)/(\d+) (COMPLETE|PRUNED|FAIL) .*\) [\d.]+s ETA \S+$", re.MULTILINE)
# How long Python, Hydra and the plugin may take to build the sweeper after the test starts the command.
START_UP_SLACK_S = 20


@dataclass(frozen=True)
class Runs:
    folder: Path
    storage: str
    launched: float  # time.time() just before the first command started
    timed: str  # stdout of the run with the time budget
    resumed: str  # stdout of the same command without it

    def trials(self) -> list[FrozenTrial]:
        return optuna.load_study(study_name="smoke", storage=open_storage(self.storage)).get_trials()


def command(folder: Path, storage: str, *extra: str) -> list[str]:
    small = [
        "data.train_subset=300",
        "train.epochs=1",
        "tracking.plots=false",
        f"hydra.sweeper.n_trials={N_TRIALS}",
    ]
    bound = f"+hydra.sweeper.constraints.n_params='<= {BOUND}'"
    return ["smoke", *small, bound, *store_overrides(folder), f"hydra.sweeper.storage={storage}", *extra]


def succeed(arguments: list[str]) -> str:
    result = run_cli(arguments)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    folder = tmp_path_factory.mktemp("budget")
    storage = f"sqlite:///{folder}/optuna.db"
    launched = time.time()
    timed = succeed(command(folder, storage, f"hydra.sweeper.timeout_s={TIMEOUT_S}"))
    resumed = succeed(command(folder, storage))
    return Runs(folder, storage, launched, timed, resumed)


def test_the_timed_run_stops_asking_on_time_and_leaves_nothing_running(runs: Runs) -> None:
    last = runs.timed.strip().splitlines()[-1]
    done = PROGRESS.findall(runs.timed)
    timed_trials = [trial for trial in runs.trials() if int(trial.number) < len(done)]
    assert all(trial.state.is_finished() for trial in timed_trials)
    deadline = runs.launched + TIMEOUT_S
    # Each trial of the timed run was asked for before the time was up.
    for trial in timed_trials:
        assert trial.datetime_start.timestamp() < deadline + START_UP_SLACK_S
    assert len(done) < N_TRIALS, runs.timed
    assert f"stopped on time (timeout_s={TIMEOUT_S} reached after" in last, runs.timed
    assert f"; {len(done)}/{N_TRIALS} trials have a verdict" in last, last
    if timed_trials:
        # It stopped only once a trial ended after the time was up: it never cut a running trial short.
        assert timed_trials[-1].datetime_complete.timestamp() >= deadline - 1


def test_the_same_command_without_the_budget_resumes_to_n_trials(runs: Runs) -> None:
    timed = [int(number) for number, _, _ in PROGRESS.findall(runs.timed)]
    resumed = [int(number) for number, _, _ in PROGRESS.findall(runs.resumed)]
    assert timed + resumed == list(range(N_TRIALS))
    assert f"{N_TRIALS}/{N_TRIALS} trials have a verdict" in runs.resumed.strip().splitlines()[-1]
    trials = runs.trials()
    assert count_verdicts(trials) == N_TRIALS and all(trial.state.is_finished() for trial in trials)
    client = MlflowClient(f"sqlite:///{runs.folder}/mlflow.db")
    for run in client.search_runs([client.get_experiment_by_name("mnist-mlp").experiment_id]):
        assert run.info.status != "RUNNING", run.info.run_name


def test_every_judged_trial_carries_its_constraint_from_the_costs_its_run_logged(runs: Runs) -> None:
    client = MlflowClient(f"sqlite:///{runs.folder}/mlflow.db")
    judged = [trial for trial in runs.trials() if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert judged
    for trial in judged:
        assert trial.constraints == {"n_params": trial.user_attrs["n_params"] - BOUND}
        if trial.state == TrialState.COMPLETE:
            logged = client.get_run(trial.user_attrs[MLFLOW_RUN_ATTR]).data.metrics
            assert logged["n_params"] == trial.user_attrs["n_params"]
            assert logged["fit_seconds"] == pytest.approx(trial.user_attrs["fit_seconds"])
    # Trial 0 is the baseline: 512 units, over the bound.
    assert runs.trials()[0].user_attrs["n_params"] == 407_050 and not is_feasible(runs.trials()[0])
    lines = PROGRESS.finditer(runs.timed + runs.resumed)
    first = next(lines).group(0)
    assert first.startswith("trial 0/4 ") and f"INFEASIBLE (n_params=407050 > {BOUND})" in first


def test_the_report_is_handed_feasible_trials_only_and_trials_csv_says_which(runs: Runs) -> None:
    study = optuna.load_study(study_name="smoke", storage=open_storage(runs.storage))
    for trial in top_trials(study, N_TRIALS):
        assert trial.user_attrs["n_params"] <= BOUND
    client = MlflowClient(f"sqlite:///{runs.folder}/mlflow.db")
    parent = client.search_runs(
        [client.get_experiment_by_name("mnist-mlp").experiment_id], filter_string="attributes.run_name = 'smoke'"
    )[0]
    downloads = runs.folder / "downloads"
    downloads.mkdir(exist_ok=True)
    table = Path(client.download_artifacts(parent.info.run_id, "trials.csv", str(downloads))).read_text()
    rows = list(csv.DictReader(io.StringIO(table)))
    by_number = {int(row["number"]): row for row in rows}
    for trial in study.get_trials():
        if trial.constraints:
            assert by_number[trial.number]["feasible"] == str(is_feasible(trial))


def test_the_sweep_s_lines_reach_its_log_file_and_each_trial_s_job_log_with_their_time(runs: Runs) -> None:
    # On the console each line is bare (PROGRESS matches from the line's start); the files carry the time.
    stamped = re.compile(
        r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[mnist_study\.sweep\.sweeper\]\[INFO\] - (.*)$"
    )
    sweep_log = (runs.folder / "multirun" / "sweep.log").read_text().splitlines()
    messages = [match.group(1) for line in sweep_log if (match := stamped.match(line))]
    printed = [line for line in (runs.timed + runs.resumed).splitlines() if line in messages]
    assert PROGRESS.findall("\n".join(printed)) == PROGRESS.findall(runs.timed + runs.resumed)
    assert any("stopped on time" in message for message in messages)
    job_log = (runs.folder / "multirun" / "0" / "run.log").read_text().splitlines()
    last = stamped.match(job_log[-1])
    assert last is not None and last.group(1).startswith("trial 0/4 "), job_log[-3:]
