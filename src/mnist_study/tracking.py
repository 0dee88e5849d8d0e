"""MLflow run lifecycle and logging: one run per job, every epoch as it ends, never a run left RUNNING.

Uses `MlflowClient` with explicit run ids rather than MLflow's fluent "active run": trials run one after another
in one process, and a sweeper's parent run must not leak into the next trial as global state.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mnist_study.dataset_inputs import log_datasets
from mnist_study.provenance import RUN_KEY_TAG, environment_tags, flatten, run_key
from mnist_study.secrets import redact

if TYPE_CHECKING:
    from mnist_study.callbacks import EpochLogger

# MLflow limits a batch to 1000 metrics / 100 params / 100 tags.
PARAMS_PER_BATCH = 100


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as MLflow params, without the bookkeeping that only says where to log, nor the
    `_target_` classes (the config.yaml artifact has them; `optimizer.name` says which optimizer ran)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = flatten({key: value for key, value in resolved.items() if key not in ("tracking", "trial")})
    return {key: redact(str(value)) for key, value in flat.items() if not key.endswith("._target_")}


def mlflow_client(uri: str) -> MlflowClient:
    """An MLflow client for `uri`, safe when several processes open a brand-new SQLite store at once.

    MLflow creates and migrates a SQLite store's tables the first time a client opens it; two processes doing that
    together can leave a half-migrated schema behind (`table _alembic_tmp_experiments already exists`) that no
    retry repairs. An exclusive lock on a file beside the database makes that step one process at a time.
    """
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str) -> str:
    """The experiment's id, creating it with artifacts under `artifact_location` if it is new.

    Several workers may start together; whoever loses the creation race reads the winner's experiment. Behind
    an `mlflow server` the server decides where artifacts go (it serves them to every host), so
    `artifact_location` applies only to a store this process writes itself. The experiment is tagged as model
    training (`mlflow.experimentKind`, which MLflow's UI reads to choose between its GenAI and model-training
    views); an existing experiment without that tag gets it, one whose kind was set otherwise keeps it.
    """
    kind_tag, kind = "mlflow.experimentKind", "custom_model_development"
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if kind_tag not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, kind_tag, kind)
        return experiment.experiment_id
    served = client.tracking_uri.startswith(("http://", "https://"))
    location = None if served else Path(artifact_location).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags={kind_tag: kind})
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class TrackedRun:
    """One MLflow run: its client, id, experiment and the logging a job does into it."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.loggers: list[EpochLogger] = []

    def epoch_logger(self, synchronous: bool = False) -> EpochLogger:
        """A callback that logs every epoch into this run (asynchronously unless `synchronous`)."""
        from mnist_study.callbacks import EpochLogger  # Keras loads only where a run trains.

        logger = EpochLogger(self.client, self.run_id, synchronous=synchronous)
        self.loggers.append(logger)
        return logger

    def flush(self) -> None:
        """Wait for every asynchronous write into this run (called before the run is terminated)."""
        for logger in self.loggers:
            logger.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(key, redact(str(value))) for key, value in tags.items()])


@contextlib.contextmanager
def tracked_run(cfg: DictConfig, run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[TrackedRun]:
    """Open an MLflow run for this job and close it FINISHED, FAILED or KILLED, whatever happens inside."""
    client = mlflow_client(cfg.tracking.uri)
    experiment_id = get_or_create_experiment(client, cfg.tracking.experiment, cfg.tracking.artifact_location)
    all_tags = {**environment_tags(), "mlflow.source.name": "src/run.py", **(tags or {})}
    key = run_key(cfg)
    if key is not None:
        all_tags[RUN_KEY_TAG] = key
    if cfg.tracking.parent_run_id:
        all_tags["mlflow.parentRunId"] = cfg.tracking.parent_run_id
    run = client.create_run(
        experiment_id, run_name=run_name, tags={k: redact(str(v)) for k, v in all_tags.items()}
    )
    tracked = TrackedRun(client, run.info.run_id, experiment_id)
    try:
        params = [Param(key, value) for key, value in run_params(cfg).items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run.info.run_id, params=params[start : start + PARAMS_PER_BATCH])
        client.log_text(run.info.run_id, redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        log_datasets(client, run.info.run_id, cfg.data)
        with system_metrics(cfg.tracking, client.tracking_uri, run.info.run_id):
            yield tracked
        # Queued epoch metrics must be stored before the run is closed; a failed write fails the run.
        tracked.flush()
    except KeyboardInterrupt:
        _flush_quietly(tracked)
        _end(client, run.info.run_id, RunStatus.KILLED, "interrupted (SIGINT or SIGTERM)")
        raise
    except BaseException as error:
        _flush_quietly(tracked)
        _end(client, run.info.run_id, RunStatus.FAILED, f"{type(error).__name__}: {error}")
        raise
    else:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))


@contextlib.contextmanager
def system_metrics(tracking: DictConfig, uri: str, run_id: str) -> Iterator[None]:
    """MLflow's own system metrics (`system/cpu_utilization_percentage`, memory, disk, network; GPU where there is
    one) sampled into the run every `tracking.system_metrics_interval_s` seconds while it trains, when
    `tracking.system_metrics` is true. The sampler is stopped, and its last samples stored, before the run ends."""
    if not tracking.system_metrics:
        yield
        return
    # Imported only when asked for: MLflow's monitors import psutil (and probe for a GPU) when they load.
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # Its notes (three INFO lines a run, and a warning with the store's error when a sample cannot be stored) would
    # come between a sweep's one line per trial; the samples are best effort, the run's own logging is not.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
    monitor = SystemMetricsMonitor(run_id, sampling_interval=tracking.system_metrics_interval_s, tracking_uri=uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def running_runs(client: MlflowClient, experiment_id: str, condition: str) -> list[Run]:
    """The runs of an experiment still RUNNING that meet a search condition (`tags.report = 'smoke'`)."""
    query = f"{condition} and attributes.status = 'RUNNING'"
    return client.search_runs([experiment_id], filter_string=query, max_results=1000)


def close_killed(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Close a run whose process died before it could: record why (`tags`), then KILLED if it is still RUNNING."""
    client.log_batch(run_id, tags=[RunTag(key, redact(str(value))[:5000]) for key, value in tags.items()])
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


def _flush_quietly(tracked: TrackedRun) -> None:
    """Store what can still be stored of a failing run; the original error is the one to report."""
    with contextlib.suppress(Exception):
        tracked.flush()


def _end(client: MlflowClient, run_id: str, status: int, reason: str) -> None:
    """Record why the run ended, then close it; a tracking store that fails here must not hide the reason."""
    with contextlib.suppress(Exception):
        client.set_tag(run_id, "error", redact(reason)[:5000])
    client.set_terminated(run_id, RunStatus.to_string(status))
