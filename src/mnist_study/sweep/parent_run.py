"""The study's MLflow parent run: found again by every worker and on every resume, and its end-of-sweep summary.

The parent run's id lives in the study itself (study user attr `mlflow_parent_run_id`), so whoever reaches the
study finds the same parent. Optuna has no compare-and-set for user attrs, so the one worker that creates a parent
run is elected by creating a companion "claim" study (`<study>:mlflow-parent`): creating a study is atomic in every
Optuna storage (a unique name in an RDB, a locked append in a journal file), so exactly one of any number of racing
workers wins, and the others wait for the id it records. The worker that created the study claims at once; one that
finds an empty study without the id first waits briefly for the creator.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from mnist_study.plots import log_figure
from mnist_study.provenance import environment_tags
from mnist_study.secrets import redact
from mnist_study.sweep.constraints import is_feasible
from mnist_study.sweep.figures import study_figures
from mnist_study.sweep.liveness import this_host
from mnist_study.sweep.schema import (
    HOST,
    MLFLOW_RUN_ATTR,
    PARENT_RUN_ATTR,
    PID,
    count_verdicts,
    state_counts,
    trial_values,
)
from mnist_study.sweep.storage import open_storage
from mnist_study.tracking import close_killed, get_or_create_experiment, mlflow_client, running_runs

log = logging.getLogger(__name__)

# How long a worker that did not create the study waits for its creator to record the parent run.
PARENT_WAIT_SECONDS = 30.0
# How long a worker that lost the claim waits for the winner to record the parent run (a few MLflow requests).
CLAIM_WAIT_SECONDS = 120.0
# The companion study whose creation elects the parent run's creator; `:<run id>` follows when replacing that run.
CLAIM_SUFFIX = ":mlflow-parent"


class ParentRun:
    """The study's MLflow parent run, opened (RUNNING) for the duration of one sweep process."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @classmethod
    def open(cls, study: optuna.Study, created: bool, tracking: Mapping[str, Any], storage_url: str) -> ParentRun:
        """Find the study's parent run, or create it if this worker wins the claim (see the module docstring)."""
        client = mlflow_client(tracking["uri"])
        run_id = None if created else _wait_for_parent_id(study)
        if run_id is not None and _exists(client, run_id):
            # A resumed study's parent was closed by the last sweep process; it runs again while trials run.
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return cls(client, run_id)
        if run_id is not None:
            log.warning("parent run %s of study %s is not in this tracking store; replacing it", run_id, study)
        if _claim(study, storage_url, replacing=run_id):
            experiment_id = get_or_create_experiment(client, tracking["experiment"], tracking["artifact_location"])
            tags = {
                **environment_tags(),
                "mlflow.source.name": "src/run.py -m sweep",
                "optuna.study": study.study_name,
                "optuna.storage": redact(storage_url),
                "optuna.direction": ",".join(direction.name.lower() for direction in study.directions),
            }
            created_id = client.create_run(experiment_id, run_name=study.study_name, tags=tags).info.run_id
            study.set_user_attr(PARENT_RUN_ATTR, created_id)
            return cls(client, created_id)
        winner_id = _wait_for_winner(study, storage_url, replacing=run_id)
        if not _exists(client, winner_id):
            raise RuntimeError(
                f"the parent run {winner_id} another worker recorded for study {study.study_name} is not in "
                f"{redact(tracking['uri'])}: give every worker of a study the same tracking.uri"
            )
        client.update_run(winner_id, status=RunStatus.to_string(RunStatus.RUNNING))
        return cls(client, winner_id)

    def close(self, status: int) -> None:
        self.client.set_terminated(self.run_id, RunStatus.to_string(status))

    def tag_child(self, child_run_id: str | None, state: TrialState) -> None:
        """Record the trial's final Optuna state on its child run (tags may change; the run may be closed)."""
        if child_run_id:
            self.client.set_tag(child_run_id, "optuna.state", state.name)

    def close_orphan(self, child_run_id: str | None) -> None:
        """Close the MLflow run of a trial whose worker died (it could not close the run itself)."""
        if child_run_id and _exists(self.client, child_run_id):
            close_killed(self.client, child_run_id, {"optuna.state": TrialState.FAIL.name})

    def close_strays(self, study: optuna.Study) -> None:
        """Close the runs under this parent left RUNNING by a worker that died between writing its trial's verdict
        (or failing a dead worker's trial) and closing the run; found by their own `optuna.trial` tag, so a run
        whose id never reached the trial is found too."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        runs = running_runs(self.client, experiment_id, f"tags.mlflow.parentRunId = '{self.run_id}'")
        if not runs:
            return
        states = {trial.number: trial.state for trial in study.get_trials(deepcopy=False)}
        for run in runs:
            number = run.data.tags.get("optuna.trial", "")
            state = states.get(int(number)) if number.isdigit() else None
            if state is None or not state.is_finished():
                continue
            status = RunStatus.FINISHED if state in (TrialState.COMPLETE, TrialState.PRUNED) else RunStatus.KILLED
            self.client.set_tag(run.info.run_id, "optuna.state", state.name)
            self.client.set_terminated(run.info.run_id, RunStatus.to_string(status))

    def log_space(self, space: Mapping[str, str]) -> None:
        """The search space in force, as tags (a resumed sweep may narrow it, and params cannot change)."""
        tags = [RunTag(f"space.{key}", redact(value)[:5000]) for key, value in space.items()]
        self.client.log_batch(self.run_id, tags=tags)

    def log_summary(self, study: optuna.Study, objectives: Sequence[str]) -> None:
        """Best trial (or Pareto front), trials.csv and plots: what the study has found so far, rewritten by every
        sweep process."""
        trials = study.get_trials(deepcopy=False)
        step = count_verdicts(trials)
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"n_{state.name.lower()}", count, now, step) for state, count in state_counts(trials).items()
        ]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        # With constraints, only a feasible trial can be the best (as in Optuna's best_trial and best_trials).
        feasible = [t for t in complete if is_feasible(t)]
        tags: list[RunTag] = []
        if feasible and len(objectives) > 1:
            front = study.best_trials
            metrics += [Metric("pareto_front_size", float(len(front)), now, step)]
            self.client.log_text(self.run_id, pareto_csv(front, objectives), "pareto.csv")
            self._tag_front(complete, {trial.number for trial in front})
        elif feasible:
            best = study.best_trial
            metrics += [Metric(f"best_{objectives[0]}", float(best.value), now, step)]
            metrics += [Metric("best_trial", float(best.number), now, step)]
            params = trial_values(best)
            tags += [RunTag("best.trial", str(best.number)), RunTag("best.params", json.dumps(params))]
            self.client.log_dict(self.run_id, {"number": best.number, "value": best.value, **params}, "best.json")
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self.client.log_text(self.run_id, trials_csv(study), "trials.csv")
        self._log_plots(study, objectives)

    def _tag_front(self, complete: Sequence[FrozenTrial], front: set[int]) -> None:
        """Tag every COMPLETE trial's run with whether it is on the Pareto front now (the front moves)."""
        for trial in complete:
            run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
            if run_id:
                self.client.set_tag(run_id, "optuna.pareto_front", str(trial.number in front).lower())

    def _log_plots(self, study: optuna.Study, objectives: Sequence[str]) -> None:
        """The study's figures; each is best effort and never fails the sweep (see `plots.log_figure`)."""
        for artifact, draw in study_figures(study, objectives).items():
            log_figure(self.client, self.run_id, draw, artifact)


def trials_csv(study: optuna.Study) -> str:
    """Optuna's table of the study's trials; in a constrained study, with each constraint's value per trial
    (`constraint_<metric>`, <= 0 holds) and whether the trial is `feasible`."""
    table = study.trials_dataframe()
    trials = study.get_trials(deepcopy=False)
    metrics = sorted({metric for trial in trials for metric in trial.constraints})
    if metrics and not table.empty:
        by_number = {trial.number: trial for trial in trials}
        for metric in metrics:
            table[f"constraint_{metric}"] = [by_number[n].constraints.get(metric) for n in table["number"]]
        # Only a trial judged against the constraints (COMPLETE or PRUNED) is feasible or not.
        table["feasible"] = [
            is_feasible(by_number[n]) if by_number[n].constraints else None for n in table["number"]
        ]
    return table.to_csv(index=False)


def pareto_csv(front: Sequence[FrozenTrial], objectives: Sequence[str]) -> str:
    """The non-dominated trials: number, one column per objective, then the values they ran with."""
    keys = sorted({key for trial in front for key in trial_values(trial)})
    output = io.StringIO()
    writer = csv.writer(output)
    writer.writerow(["number", *objectives, *keys])
    for trial in sorted(front, key=lambda t: t.number):
        values = trial_values(trial)
        writer.writerow([trial.number, *trial.values, *(values.get(key, "") for key in keys)])
    return output.getvalue()


def _wait_for_parent_id(study: optuna.Study) -> str | None:
    """The recorded parent id; an empty study may be seconds old, so give its creator time to record it."""
    deadline = time.monotonic() + PARENT_WAIT_SECONDS
    while True:
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id or study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            return run_id
        time.sleep(0.5)


def _claim(study: optuna.Study, storage_url: str, replacing: str | None) -> bool:
    """Whether this worker won the right to create the study's parent run (in place of `replacing`, if given)."""
    # Optuna announces every study it creates; the claim is the sweep's own bookkeeping, not a study a user made.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        claim = optuna.create_study(study_name=_claim_name(study, replacing), storage=open_storage(storage_url))
    except optuna.exceptions.DuplicatedStudyError:
        return False
    finally:
        optuna.logging.set_verbosity(verbosity)
    # Who holds the claim, for the error a waiting worker raises should the winner die before recording the run.
    claim.set_user_attr(HOST, this_host())
    claim.set_user_attr(PID, os.getpid())
    return True


def _claim_name(study: optuna.Study, replacing: str | None) -> str:
    return study.study_name + CLAIM_SUFFIX + (f":{replacing}" if replacing else "")


def _wait_for_winner(study: optuna.Study, storage_url: str, replacing: str | None) -> str:
    """The parent run id the claim's winner records (different from `replacing`)."""
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while time.monotonic() < deadline:
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id and run_id != replacing:
            return run_id
        time.sleep(0.5)
    claim = _claim_name(study, replacing)
    holder = optuna.load_study(study_name=claim, storage=open_storage(storage_url)).user_attrs
    raise RuntimeError(
        f"study {study.study_name}: the worker that claimed its MLflow parent run (process {holder.get(PID)} on "
        f"{holder.get(HOST)}) did not record it within {CLAIM_WAIT_SECONDS:.0f} s; if that worker died, delete "
        f"the claim (optuna delete-study --study-name '{claim}' --storage ...) and start the workers again"
    )


def _exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True
