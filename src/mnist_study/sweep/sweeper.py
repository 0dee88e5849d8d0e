"""The Hydra Sweeper that drives an Optuna study: ask, launch the job through Hydra's launcher, tell.

Several sweep processes may share one study (a journal file on one host, PostgreSQL across hosts). Together they
finish exactly `n_trials` counted trials: a worker asks only while counted plus running trials fall short, and a
trial whose rank (see `schema.rank`) has reached `n_trials` is closed as an uncounted FAIL before it ever runs.
This module is the loop and Hydra's launching; every change of a trial's state is made by the trial ledger
(`ledger.TrialLedger`).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from mlflow.entities import RunStatus
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from mnist_study.errors import first_line
from mnist_study.metrics import direction_for, objective_names
from mnist_study.secrets import redact
from mnist_study.sweep import constraints, known, liveness, logs, schema
from mnist_study.sweep.ledger import TrialLedger
from mnist_study.sweep.liveness import Heartbeat
from mnist_study.sweep.parent_run import ParentRun
from mnist_study.sweep.sampling import make_sampler
from mnist_study.sweep.settings import SweepSettings
from mnist_study.sweep.space import SearchSpace, format_value, in_distribution, parse_space
from mnist_study.sweep.storage import open_storage, shareable
from mnist_study.sweep.stores import (
    STORE_ERRORS,
    StoreFailure,
    job_exception,
    job_store_error,
    retrying,
    store_failure_text,
)

# The sweep's own lines (start-up, one per trial, the last one) go through this logger: Hydra's logging config
# (conf/hydra/hydra_logging/mnist_study.yaml) shows them bare on the console and timestamped in sweep.log.
log = logging.getLogger(__name__)
Result = TypeVar("Result")


class StudySweeper:
    """Ask Optuna for a trial, run it as a Hydra job, tell Optuna its verdict; until the study holds n_trials.

    Built by the Hydra plugin (`hydra_plugins.mnist_study_sweeper`) once its checks have passed.
    """

    def __init__(
        self,
        settings: SweepSettings,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
        started: float | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        # When the command started (time.monotonic()), the origin of `timeout_s`.
        self.started = time.monotonic() if started is None else started
        self.launcher: Launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        """Run trials until the study holds `n_trials` counted verdicts, then summarise it in MLflow.

        SIGTERM (what a scheduler sends a task it cancels, preempts or times out) is taken like Ctrl-C: the running
        trial is handed back (an uncounted FAIL, its params queued again) and its MLflow run closed KILLED.
        """
        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            self._sweep(arguments)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _sweep(self, arguments: list[str]) -> None:
        config = self.config
        quiet_per_job_logging()
        settings = self.settings
        space = parse_space(settings.params, arguments, settings.conditional)
        objectives = objective_names(config.objective)
        directions = [direction_for(name) for name in objectives]
        storage = open_storage(settings.storage, (settings.heartbeat_interval_s, int(settings.heartbeat_grace_s)))
        study, created = open_study(settings.study_name, storage, directions)
        aims = ", ".join(f"{direction} {name}" for direction, name in zip(directions, objectives, strict=True))
        several = "; several objectives: a Pareto front, no pruning" if len(objectives) > 1 else ""
        log.info("study %s (%s%s) in %s", settings.study_name, aims, several, redact(settings.storage))
        for line in fixed_lines(space):
            log.info("%s", line)
        if settings.constraints:
            bounds = ", ".join(str(constraint) for constraint in settings.constraints)
            log.info("constraints: %s (a trial that breaks one is infeasible, never the best)", bounds)
        tracking = OmegaConf.to_container(config.tracking, resolve=True)
        parent = ParentRun.open(study, created, tracking, settings.storage)
        # Every change of a trial's state goes through the ledger; the loop below only decides when to make one.
        closing = functools.partial(close_recovered, parent, settings.n_trials)
        ledger = TrialLedger(study, storage, settings.n_trials, on_recovered=closing)
        if created:
            enqueue_baseline(ledger, space, baseline_values(config, space))
            for entry in settings.enqueue:
                ledger.enqueue(entry)
            if settings.warm_start is not None:
                copied, skipped = known.warm_start(ledger, settings.warm_start, space)
                source = settings.warm_start["study"]
                log.info(
                    "warm start: %d COMPLETE trials of %s copied, %d outside this space left",
                    copied,
                    source,
                    skipped,
                )
        parent.log_space(space.described())
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        # Unresolved, so a URL from the environment stays `${study_storage:}`; one typed in clear is redacted.
        (Path(config.hydra.sweep.dir) / "multirun.yaml").write_text(redact(OmegaConf.to_yaml(config)))
        status = RunStatus.FAILED
        try:
            _Loop(self, ledger, space, parent, objectives).run()
            status = RunStatus.FINISHED
        except KeyboardInterrupt:
            status = RunStatus.KILLED
            raise
        except STORE_ERRORS as error:
            # A store that fails mid-sweep stops the sweep: every trial run now would fail for the same reason.
            text = store_failure_text(error, config.tracking.uri, settings.storage, settings.store_retry_s)
            raise StoreFailure(text) from error
        finally:
            try:
                parent.log_summary(study, objectives)
            except Exception as error:  # The summary is a convenience; it must not hide how the sweep ended.
                log.warning("could not write the study summary to MLflow: %s", error)
            try:
                parent.close(status)
            except STORE_ERRORS as error:  # The next sweep process reopens the parent; say how this one ended.
                log.warning("could not close the study's MLflow run: %s", first_line(error))


class _Loop:
    """One sweep process's ask / launch / tell loop, and its progress lines."""

    def __init__(
        self,
        sweeper: StudySweeper,
        ledger: TrialLedger,
        space: SearchSpace,
        parent: ParentRun,
        objectives: list[str],
    ) -> None:
        self.sweeper = sweeper
        self.settings = sweeper.settings
        self.ledger = ledger
        self.study = ledger.study
        self.storage = ledger.storage
        self.space = space
        self.parent = parent
        self.objectives = objectives
        self.durations: list[float] = []

    def run(self) -> None:
        n_trials = self.settings.n_trials
        self.study.sampler = make_sampler(self.settings.sampler)
        on_time = False
        while True:
            # A worker may die at any instant: before each ask, repair what dead workers left half-written.
            self._store(self._recover_orphans)
            if self._store(self.ledger.is_full):
                break
            # As Optuna's optimize(timeout=): no new trial once the time is up; the one running has finished.
            if self._out_of_time():
                on_time = True
                break
            trial = self._store(lambda: self.ledger.ask(self.space))
            if self._store(functools.partial(self.ledger.is_surplus, trial)):
                self.ledger.give_back(trial, "surplus: other workers already hold the last trials of the budget")
                continue
            identifier = self.ledger.trial_id(trial.number)
            with Heartbeat(self.storage, identifier, self.settings.heartbeat_interval_s):
                self._run_trial(trial)
        done = self.ledger.count()
        stopped = ""
        if on_time:
            elapsed = format_duration(time.monotonic() - self.sweeper.started)
            stopped = f" stopped on time (timeout_s={self.settings.timeout_s:g} reached after {elapsed});"
        log.info(
            "study %s:%s %d/%d trials have a verdict; %s",
            self.study.study_name,
            stopped,
            done,
            n_trials,
            self._best_text(),
        )

    def _out_of_time(self) -> bool:
        """Whether `timeout_s` has passed since the command started."""
        timeout = self.settings.timeout_s
        return timeout is not None and time.monotonic() - self.sweeper.started >= timeout

    def _store(self, call: Callable[[], Result]) -> Result:
        """`call()`, retried while the study's storage is unreachable, for up to `store_retry_s`."""
        return retrying(call, self.settings.store_retry_s, f"the Optuna storage {self.settings.storage}")

    def _recover_orphans(self) -> None:
        """Recover dead workers' trials (the ledger fails them uncounted, queues their params again and, through
        `close_recovered`, closes their MLflow runs KILLED); then close any run a dead worker left RUNNING under
        the study's parent whose trial is no longer running."""
        self.ledger.recover(self.settings.heartbeat_grace_s)
        self.parent.close_strays(self.study)

    def _run_trial(self, trial: optuna.Trial) -> None:
        started = time.perf_counter()
        self._store(lambda: self._start(trial))
        overrides = self._job_overrides(trial)
        try:
            # The launcher composes the job's config once; the space's values were all composed and validated
            # before the first trial, so a separate validating compose per trial would only repeat that work.
            (result,) = self.sweeper.launcher.launch([overrides], initial_job_idx=trial.number)
        except HydraException as error:
            self.ledger.give_back(trial, f"invalid overrides: {error}")
            raise ValueError(f"trial {trial.number}: the overrides do not compose: {error}") from error
        except KeyboardInterrupt:
            self.ledger.give_back(trial, "interrupted (SIGINT or SIGTERM)", requeue=True)
            raise
        failure = job_store_error(result)
        if failure is not None:
            # The trial did not fail; the store it logs to did. Its params run again when the sweep resumes.
            self.ledger.give_back(trial, f"store failed: {first_line(failure)}", requeue=True)
            raise failure
        state, value, reason = verdict(result)
        judge = self._judge if self.settings.constraints else None
        frozen = self._store(lambda: self.ledger.tell(trial, state, value, reason, judge))
        if frozen is None:
            log.info(
                "trial %d/%d was failed by another worker (its heartbeat was late); its result is dropped and its "
                "params run again",
                trial.number,
                self.settings.n_trials,
            )
            return
        self.parent.tag_child(frozen.user_attrs.get(schema.MLFLOW_RUN_ATTR), state)
        self.durations.append(time.perf_counter() - started)
        with logs.also_in_job_log(getattr(result, "hydra_cfg", None)):
            log.info("%s", self._progress(frozen, reason))

    def _judge(self, trial: optuna.Trial, stored: FrozenTrial) -> None:
        """The study's constraints, judged on the costs the job recorded on the trial (Optuna's constraint values:
        <= 0 feasible), set before the verdict so that the sampler and `best_trial` see them."""
        constraints.judge(trial, self.settings.constraints, stored)

    def _start(self, trial: optuna.Trial) -> None:
        """Record who runs the trial and how to prune it, where a job in any process can read them."""
        attrs = {**liveness.worker_attrs(), **schema.fixed_attrs(self.space.fixed_for(trial.params))}
        system_attrs: dict[str, Any] = {schema.STORE_RETRY_ATTR: self.settings.store_retry_s}
        if self.settings.pruner is not None:
            system_attrs[schema.PRUNER_ATTR] = self.settings.pruner
        self.ledger.start(trial, attrs, system_attrs)

    def _job_overrides(self, trial: optuna.Trial) -> list[str]:
        return [
            *self.space.job_overrides(trial.params),
            f"trial.study_name={quote(self.study.study_name)}",
            f"trial.storage={quote(shareable(self.settings.storage))}",
            f"trial.number={trial.number}",
            f"tracking.parent_run_id={self.parent.run_id}",
        ]

    def _progress(self, trial: FrozenTrial, reason: str | None) -> str:
        """`trial 7/40 COMPLETE val_accuracy=0.9812 (best 0.9831 #5) 12.3s ETA 5m`."""
        head = f"trial {trial.number}/{self.settings.n_trials} {trial.state.name}"
        if trial.state == TrialState.COMPLETE:
            head += "".join(
                f" {name}={value:.4g}" for name, value in zip(self.objectives, trial.values, strict=True)
            )
        elif trial.state == TrialState.PRUNED:
            last = trial.last_step
            value = trial.intermediate_values.get(last) if last is not None else None
            shown = (
                f" at epoch {last} {self.objectives[0]}={value:.4f}" if value is not None else " before epoch 1"
            )
            head += shown
        else:
            head += f" {reason}"
        head += constraints.describe(self.settings.constraints, trial)
        return f"{head} ({self._best_text()}) {self.durations[-1]:.1f}s ETA {self._eta()}"

    def _best_text(self) -> str:
        if len(self.objectives) > 1:
            return f"Pareto front of {len(self.study.best_trials)}"
        try:
            best = self.study.best_trial
        except ValueError:
            return "no feasible COMPLETE trial yet" if self.settings.constraints else "no COMPLETE trial yet"
        return f"best {best.value:.4f} #{best.number}"

    def _eta(self) -> str:
        """The time the remaining trials take at this worker's mean, or, when sooner, until the time budget runs
        out and the trial started just before it ends."""
        counted = self.ledger.count()
        remaining = max(0, self.settings.n_trials - counted)
        mean = sum(self.durations) / len(self.durations)
        eta = remaining * mean
        if self.settings.timeout_s is not None:
            left = self.settings.timeout_s - (time.monotonic() - self.sweeper.started)
            eta = min(eta, left + mean) if left > 0 else 0.0
        return format_duration(eta)


def interrupt(signal_number: int, frame: object) -> None:
    """A signal handler that interrupts the sweep as Ctrl-C does."""
    raise KeyboardInterrupt(signal.Signals(signal_number).name)


def quiet_per_job_logging() -> None:
    """Keep the sweep's output to one line per trial: Hydra's per-launch lines and TensorFlow's retracing
    warnings (each trial builds a new model) say nothing the progress line and MLflow do not."""
    logging.getLogger("hydra._internal.core_plugins.basic_launcher").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def open_study(
    name: str, storage: optuna.storages.BaseStorage, directions: str | Sequence[str]
) -> tuple[optuna.Study, bool]:
    """Load the study, or create it; exactly one of several racing workers is told it created it."""
    wanted = [directions] if isinstance(directions, str) else list(directions)
    try:
        return optuna.create_study(study_name=name, storage=storage, directions=wanted), True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
    found = [direction.name.lower() for direction in study.directions]
    if found != wanted:
        raise ValueError(
            f"study {name!r} was created to {', '.join(found)}, but objective asks to {', '.join(wanted)}; "
            "use another hydra.sweeper.study_name"
        )
    return study, False


def baseline_values(config: DictConfig, space: SearchSpace) -> dict[str, Any]:
    """What the composed config itself says for each sampled parameter (a group's value is its chosen option)."""
    choices = config.hydra.runtime.choices
    values: dict[str, Any] = {}
    for key in space.distributions:
        values[key] = choices[key] if key in choices else OmegaConf.select(config, key, default=None)
    return values


def enqueue_baseline(ledger: TrialLedger, space: SearchSpace, baseline: Mapping[str, Any]) -> bool:
    """Queue the configured baseline as the study's first trial when the space contains it; else say why not."""
    if space.contains(baseline):
        ledger.enqueue(baseline, baseline=True)
        return True
    outside = [
        f"{key}={format_value(baseline.get(key))}"
        for key, distribution in space.distributions.items()
        if not in_distribution(baseline.get(key), distribution)
    ]
    log.info("baseline not enqueued as trial 0: outside the search space (%s)", ", ".join(outside))
    return False


def close_recovered(parent: ParentRun, n_trials: int, trial: FrozenTrial, reason: str) -> None:
    """The ledger's `on_recovered` hook: close the MLflow run of a trial recovered from a dead worker (KILLED; the
    worker could not close it) and say that the trial failed uncounted."""
    parent.close_orphan(trial.user_attrs.get(schema.MLFLOW_RUN_ATTR))
    log.info("trial %d/%d FAIL %s (uncounted; its params queued again)", trial.number, n_trials, reason)


def fixed_lines(space: SearchSpace) -> list[str]:
    """What the command line or the space fixed, as the sweep says it at start: the values every trial runs with,
    and those a branch's trials run with."""
    lines = []
    if space.fixed:
        lines.append(f"fixed in every trial: {' '.join(space.fixed.values())}")
    for branch in space.branches:
        if branch.fixed:
            lines.append(f"fixed in {branch.condition} trials: {' '.join(branch.fixed.values())}")
    return lines


def verdict(result: JobReturn) -> tuple[TrialState, float | list[float] | None, str | None]:
    """COMPLETE with a finite objective (or one per objective); PRUNED when the job says so; otherwise FAIL with
    the reason."""
    if result.status == JobStatus.COMPLETED:
        value = result.return_value
        values = list(value) if isinstance(value, list | tuple) else [value]
        if values and all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            told = [float(v) for v in values]
            return TrialState.COMPLETE, told if isinstance(value, list | tuple) else told[0], None
        return TrialState.FAIL, None, f"objective is {value!r}, not a finite number"
    error = job_exception(result)
    if isinstance(error, optuna.TrialPruned):
        return TrialState.PRUNED, None, None
    if error is not None:
        return TrialState.FAIL, None, f"{type(error).__name__}: {error}"
    return TrialState.FAIL, None, "the job ended without a result"


def quote(value: str) -> str:
    """A string as one Hydra override value, whatever characters it holds."""
    # Hydra unescapes backslashes only where they precede a quote (or end the string), so only those double.
    escaped = re.sub(r"(\\*)'", r"\1\1\\'", value)
    escaped = re.sub(r"(\\+)$", r"\1\1", escaped)
    return f"'{escaped}'"


def format_duration(seconds: float) -> str:
    """`40s`, `5m`, `1h05m`."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
