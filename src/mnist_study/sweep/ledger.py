"""The one owner of a trial's life: every change of a trial's state in the study goes through a `TrialLedger`.

A trial is queued (the baseline, a configuration queued by hand, a retry) or copied from an earlier study (a warm
start), asked (RUNNING, its parameters sampled), started (who works on it and how to prune it recorded), reported
to once per epoch by its job, then told (COMPLETE, PRUNED or FAIL with a verdict) or given back (an uncounted FAIL,
its parameters queued again when it should run again). A trial whose worker died is recovered by the next worker:
given back in the same way, then handed to the `on_recovered` hook, where the sweep closes its MLflow run. The
budget rule (which trials count towards `n_trials`) is defined by the study's schema (`mnist_study.sweep.schema`);
the ledger applies it. The sweep loop (`sweeper.py`) decides when, the job's callback (`job_trial.py`) reports,
and liveness (`liveness.py`) only says which workers are dead. This module writes to the Optuna storage only; it
never imports TensorFlow or MLflow.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from hydra.utils import instantiate
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from mnist_study.sweep import liveness, schema
from mnist_study.sweep.space import SearchSpace
from mnist_study.sweep.storage import open_storage

# Judges a trial's constraints on the trial as the storage holds it, before its verdict is told.
Judge = Callable[[optuna.Trial, FrozenTrial], None]
# Told of each trial recovered from a dead worker (as it was before, and why it was recovered), once it is failed
# and its parameters are queued again: what else the worker left open (its MLflow run) is closed there.
Recovered = Callable[[FrozenTrial, str], None]


class TrialLedger:
    """A study's trials, changed only through this object's methods (see the module docstring)."""

    def __init__(
        self, study: optuna.Study, storage: BaseStorage, n_trials: int = 0, on_recovered: Recovered | None = None
    ) -> None:
        self.study = study
        self.storage = storage
        self.n_trials = n_trials
        self.on_recovered = on_recovered

    @classmethod
    def join(cls, study_name: str, storage_url: str, number: int) -> tuple[TrialLedger, optuna.Trial]:
        """A job's side of a live trial, from another process: the ledger with the study's pruner (rebuilt from the
        config the sweeper recorded on the trial) and the trial to report to."""
        storage = open_storage(storage_url)
        identifier = schema.trial_id(storage, study_name, number)
        pruner_config = storage.get_trial_system_attrs(identifier).get(schema.PRUNER_ATTR)
        pruner = instantiate(pruner_config) if pruner_config else optuna.pruners.NopPruner()
        # The sampler is never used here (the sweeper has sampled already); a random one costs nothing to build.
        study = optuna.load_study(
            study_name=study_name, storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler()
        )
        return cls(study, storage), optuna.trial.Trial(study, identifier)

    def trial_id(self, number: int) -> int:
        """The storage's id of the study's trial `number`."""
        return schema.trial_id(self.storage, self.study.study_name, number)

    def system_attrs(self, trial: optuna.Trial) -> dict[str, Any]:
        """What the sweeper recorded on a trial for its job (the pruner's config, the store retry time)."""
        return self.storage.get_trial_system_attrs(self.trial_id(trial.number))

    def count(self) -> int:
        """How many trials hold a verdict that counts towards `n_trials`."""
        return schema.count_verdicts(self.study.get_trials(deepcopy=False))

    def is_full(self) -> bool:
        """Whether counted and running trials already make up the budget: no worker should ask for another."""
        so_far = self.study.get_trials(deepcopy=False)
        return schema.count_verdicts(so_far) + schema.count_running(so_far) >= self.n_trials

    def is_surplus(self, trial: optuna.Trial) -> bool:
        """Whether a trial just asked ranks beyond the budget (other workers hold its last places)."""
        return schema.rank(self.study.get_trials(deepcopy=False), trial.number) >= self.n_trials

    def enqueue(self, params: Mapping[str, Any], baseline: bool = False) -> None:
        """Queue a known configuration to run before the sampler draws: the configured baseline, or one queued by
        hand (`hydra.sweeper.enqueue`), marked as which."""
        mark = schema.BASELINE_ATTR if baseline else schema.ENQUEUED_ATTR
        self.study.enqueue_trial(dict(params), user_attrs={mark: True})

    def add_copy(self, trial: FrozenTrial, distributions: Mapping[str, BaseDistribution], origin: str) -> None:
        """Add a COMPLETE trial of an earlier study (a warm start), in this study's `distributions`, marked with
        where it came from (`<storage>#<study>`): it informs the sampler and never counts towards `n_trials`."""
        copy = optuna.trial.create_trial(
            params=dict(trial.params),
            distributions={key: distributions[key] for key in trial.params},
            values=trial.values,
            state=TrialState.COMPLETE,
            user_attrs={schema.WARM_START_ATTR: f"{origin}/{trial.number}"},
        )
        self.study.add_trial(copy)

    def ask(self, space: SearchSpace) -> optuna.Trial:
        """A new RUNNING trial (a queued one first), its parameters sampled from `space`."""
        with warnings.catch_warnings():
            # Optuna warns that its heartbeat is meant for study.optimize; the sweep loop beats for itself.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = self.study.ask()
        space.sample(trial)
        return trial

    def start(
        self, trial: optuna.Trial, attrs: Mapping[str, Any], system_attrs: Mapping[str, Any] | None = None
    ) -> None:
        """Record on a trial who works on it (user attrs) and what its job needs (system attrs)."""
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for key, value in (system_attrs or {}).items():
            self.storage.set_trial_system_attr(self.trial_id(trial.number), key, value)

    def record(self, trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
        """Record what a trial measured about itself (its costs), for the study's constraints."""
        for key, value in attrs.items():
            trial.set_user_attr(key, value)

    def report(self, trial: optuna.Trial, value: float, step: int) -> bool:
        """Report an epoch's objective; whether the study's pruner stops the trial."""
        trial.report(value, step=step)
        return trial.should_prune()

    def tell(
        self,
        trial: optuna.Trial,
        state: TrialState,
        value: float | list[float] | None,
        reason: str | None,
        judge: Judge | None = None,
    ) -> FrozenTrial | None:
        """Tell the verdict; None if another worker failed the trial first (it took this worker for dead)."""
        try:
            if reason:
                trial.set_user_attr(schema.FAIL_REASON, reason)
            if judge is not None and state in (TrialState.COMPLETE, TrialState.PRUNED):
                judge(trial, self.storage.get_trial(self.trial_id(trial.number)))
            return self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            told = self.study.get_trials(deepcopy=False)[trial.number]
            # A retried tell whose first attempt went through finds its own verdict.
            return told if told.state == state and schema.UNCOUNTED not in told.user_attrs else None

    def give_back(self, trial: optuna.Trial, reason: str, requeue: bool = False) -> None:
        """Close a trial that never produced a verdict as an uncounted FAIL (optionally queueing its params)."""
        trial.set_user_attr(schema.FAIL_REASON, reason)
        trial.set_user_attr(schema.UNCOUNTED, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        if requeue:
            self.requeue(trial.params, trial.number)

    def requeue(self, params: Mapping[str, Any], retry_of: int) -> None:
        """Queue a given-back trial's parameters again, marked as a retry of the first trial that ran them."""
        self.study.enqueue_trial(dict(params), user_attrs={schema.RETRY_OF: retry_of})

    def recover(self, grace_s: float) -> list[tuple[FrozenTrial, str]]:
        """Fail the trials left RUNNING by dead workers, uncounted, queue their parameters again and hand each to
        `on_recovered`.

        The reason is written before the FAIL, so a recovering worker killed between the two leaves a RUNNING trial
        that the next one recovers, never a counted FAIL. Several workers may find the same orphan at once; only
        the one whose FAIL the storage accepts re-queues it. Returns the trials this worker recovered, as they were
        before, with the reason.
        """
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale = liveness.stale_numbers(self.study, self.storage, grace_s) if running else set()
        recovered = []
        for trial in running:
            reason = liveness.orphan_reason(trial, stale, grace_s)
            if reason is None:
                continue
            identifier = self.trial_id(trial.number)
            try:
                # Another worker may finish the trial between any two of these calls; each then raises: it wins.
                self.storage.set_trial_user_attr(identifier, schema.FAIL_REASON, reason)
                self.storage.set_trial_user_attr(identifier, schema.UNCOUNTED, reason)
                self.study.tell(trial.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):
                continue  # Another worker recovered it first.
            self.requeue(trial.params, trial.user_attrs.get(schema.RETRY_OF, trial.number))
            if self.on_recovered is not None:
                self.on_recovered(trial, reason)
            recovered.append((trial, reason))
        return recovered
