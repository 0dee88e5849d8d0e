"""Refit each chosen configuration on the full training set with several seeds, each refit its own MLflow run.

Configs are composed with Hydra's compose API inside the report's own Hydra app, so every refit runs in this one
process (TensorFlow loads once). A refit's overrides are exactly what `python src/run.py` would be given to
recompute it, and the report quotes them as that command.

A refit is the same refit as a FINISHED run in the store when their keys are equal (`provenance.run_key`: the
resolved config, seed included, the data's digests and the code version): that run is reused, not trained again,
which is how a report started again after a kill resumes. The report's run records each reuse as a tag
`reused.<run id>`.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra import compose
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict

from mnist_study.checks import validate
from mnist_study.metrics import FINAL_METRICS, HISTORY_METRICS
from mnist_study.provenance import RUN_KEY_TAG, run_key
from mnist_study.report.selection import Candidate
from mnist_study.report.strays import process_tags
from mnist_study.report.workers import portable
from mnist_study.serving import MODEL_ID_TAG
from mnist_study.tracking import TrackedRun

if TYPE_CHECKING:
    import keras

    from mnist_study.report.workers import RefitWorkers

# What makes a run a refit: no validation hold-out (fit on all training images). With no validation split the
# study's objective (val_accuracy) does not exist, and nothing is selected on a refit, so its objective is the
# training accuracy.
REFIT_OVERRIDES = ("data.val_size=0", "objective=accuracy")
# The report run's tag `reused.<run id>` names each refit it took from an earlier run instead of training it.
REUSED_TAG_PREFIX = "reused."


@dataclass(frozen=True)
class Refit:
    """One planned refit: a configuration at one seed, its composed config and its overrides."""

    candidate: Candidate
    seed: int
    overrides: tuple[str, ...]
    cfg: DictConfig

    def command(self) -> str:
        """The shell command that recomputes this refit on its own."""
        return shlex.join(["python", "src/run.py", *self.overrides])


@dataclass
class RefitResult:
    """What one refit measured, and the MLflow run that holds it (trained by an earlier run when `reused`)."""

    refit: Refit
    run_id: str
    test_accuracy: float
    test_loss: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False


def override_key(override: str) -> str:
    """`model.units` for `model.units=64`, `experiments` for `+experiments=x` (what a later override replaces)."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*groups: Sequence[str]) -> tuple[str, ...]:
    """Later groups win per key, keeping first-seen order; Hydra refuses one key given twice."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            merged[override_key(override)] = override
    return tuple(merged.values())


def at_seeds(overrides: Sequence[str], seeds: Sequence[int]) -> Iterator[tuple[int, tuple[str, ...], DictConfig]]:
    """(seed, the overrides with `seed=<seed>`, the composed and validated config) for each seed.

    Hydra composes the configuration once (half a second each): the seed is a plain value that no other config
    value is composed from, so setting it on a copy gives what composing with `seed=<seed>` gives.
    """
    composed: DictConfig | None = None
    for seed in seeds:
        with_seed = merge_overrides(overrides, [f"seed={seed}"])
        if composed is None:
            composed = compose(config_name="config", overrides=list(with_seed))
        cfg = composed.copy()
        with open_dict(cfg):
            cfg.seed = seed
        validate(cfg)
        yield seed, with_seed, cfg


def plan(candidates: Sequence[Candidate], seeds: Sequence[int], forwarded: Sequence[str]) -> list[Refit]:
    """Compose and validate every refit before any training starts, so a bad override costs seconds.

    `forwarded` are the report's own `data.*`, `train.*` and `tracking.*` overrides; they apply to every
    configuration and win over a trial's own values (e.g. `train.epochs=1` to shrink a test run).
    """
    refits = []
    for candidate in candidates:
        overrides = merge_overrides(candidate.overrides, forwarded, REFIT_OVERRIDES)
        for seed, with_seed, cfg in at_seeds(overrides, seeds):
            refits.append(Refit(candidate, seed, with_seed, cfg))
    return refits


def run_refits(
    refits: Sequence[Refit], report: TrackedRun, study_name: str, reuse: bool, workers: RefitWorkers | None
) -> Iterator[RefitResult]:
    """Every refit's result, as each is ready: first those reused, then those trained, by `workers` when there
    are any (several at once, each in its own process), else one after the other in this process."""
    to_train = []
    for refit in refits:
        cfg = refit_config(refit, report)
        earlier = reused_result(refit, cfg, report) if reuse else None
        if earlier is not None:
            yield earlier
        else:
            to_train.append((refit, cfg))
    if workers is None:
        for refit, cfg in to_train:
            yield train_refit(refit, cfg, {**refit_tags(refit, cfg, study_name), **process_tags()}, study_name)
        return
    # What `train_labelled` is given in a worker, the config as plain data.
    jobs = [
        (refit.candidate.label, refit.seed, portable(cfg), refit_tags(refit, cfg, study_name), study_name)
        for refit, cfg in to_train
    ]
    for index, trained in workers.train(jobs):
        yield RefitResult(to_train[index][0], **trained)


def refit_config(refit: Refit, report: TrackedRun) -> DictConfig:
    """The refit's composed config as it trains: a child of the report run, quiet."""
    cfg = refit.cfg.copy()
    with open_dict(cfg):
        cfg.tracking.parent_run_id = report.run_id
        cfg.train.verbose = 0
    return cfg


def reused_result(refit: Refit, cfg: DictConfig, report: TrackedRun) -> RefitResult | None:
    """The result of a FINISHED run with the refit's key, recorded on the report run as a reuse; None if none."""
    earlier = reusable_run(report.client, report.experiment_id, cfg)
    if earlier is None:
        return None
    report.set_tags({f"{REUSED_TAG_PREFIX}{earlier.info.run_id}": f"{refit.candidate.label} seed={refit.seed}"})
    return stored_result(report.client, refit, earlier)


def refit_tags(refit: Refit, cfg: DictConfig, study_name: str) -> dict[str, str]:
    """What a refit's run is tagged with, besides the process that trains it (`strays.process_tags`)."""
    from mnist_study.describe import protocol

    return {
        "report": study_name,
        "report.configuration": refit.candidate.label,
        "report.seed": str(refit.seed),
        "report.command": refit.command(),
        "protocol": protocol(cfg),
        "mlflow.source.name": "src/report.py",
    }


def train_refit(refit: Refit, cfg: DictConfig, tags: dict[str, str], study_name: str) -> RefitResult:
    """Train the refit in a new MLflow run (TensorFlow loads here, not before)."""
    trained = train_labelled(refit.candidate.label, refit.seed, cfg, tags, study_name)
    return RefitResult(refit, **trained)


def train_labelled(
    label: str,
    seed: int,
    cfg: DictConfig,
    tags: dict[str, str],
    study_name: str,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Train `label` at `seed` in a new MLflow run; what `RefitResult` holds besides the plan."""
    from mnist_study.tracked_training import train_tracked

    started = time.perf_counter()
    name = f"{label} seed={seed}"
    what = f"A refit of {label} at seed {seed}, for the report on study `{study_name}`."
    trained = train_tracked(cfg, name, tags, what=what, more_callbacks=lambda run_id: callbacks)
    result = trained.result
    return {
        "run_id": trained.run_id,
        "test_accuracy": float(result["test_accuracy"]),
        "test_loss": float(result["test_loss"]),
        "history": {key: [float(value) for value in values] for key, values in result["history"].items()},
        "seconds": time.perf_counter() - started,
    }


def reusable_run(client: MlflowClient, experiment_id: str, cfg: DictConfig) -> Run | None:
    """The latest FINISHED run whose key equals this config's, holding the test scores (and a model, when the
    refit would log one); None when there is none, or when the code is not in git (no version to compare)."""
    key = run_key(cfg)
    if key is None:
        return None
    query = f"tags.`{RUN_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"])
    for run in runs:
        has_scores = all(metric in run.data.metrics for metric in FINAL_METRICS)
        if has_scores and (MODEL_ID_TAG in run.data.tags or not cfg.tracking.log_model):
            return run
    return None


def stored_result(client: MlflowClient, refit: Refit, run: Run) -> RefitResult:
    """A refit's result as a FINISHED run logged it: the test scores and the per-epoch history."""
    history = {
        key: [item.value for item in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        for key in HISTORY_METRICS
    }
    return RefitResult(
        refit,
        run.info.run_id,
        run.data.metrics["test_accuracy"],
        run.data.metrics["test_loss"],
        {key: values for key, values in history.items() if values},
        reused=True,
    )
