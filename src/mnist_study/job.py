"""One job: an MLflow run around one training run, and the objective handed back to Hydra (and a sweeper)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from omegaconf import DictConfig

from mnist_study.tracking import tracked_run
from mnist_study.train import train

log = logging.getLogger(__name__)

# Overrides that say where a job logs or reports, not what it trains; they do not name a run.
BOOKKEEPING_PREFIXES = ("+experiment=", "experiment=", "trial.", "tracking.", "hydra.", "name=")


def run_name(cfg: DictConfig, overrides: Sequence[str] = ()) -> str:
    """What the MLflow run is called: the config's `name`, a sweep trial's number, or the overrides in use."""
    if cfg.name:
        return str(cfg.name)
    if cfg.trial.number is not None:
        return f"trial-{cfg.trial.number}"
    meaningful = [item for item in overrides if not item.startswith(BOOKKEEPING_PREFIXES)]
    return ",".join(meaningful) or "baseline"


def protocol(cfg: DictConfig) -> str:
    """How the numbers were made: honestly, or by the tutorial's fit-on-test protocol."""
    return "tutorial: fit on test, score on test" if cfg.data.fit_on == "test" else "fit on train, select on val"


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> float | None:
    """Train `cfg` inside its own MLflow run; return the objective (None when there is no validation split)."""
    started = time.perf_counter()
    name = run_name(cfg, overrides)
    with tracked_run(cfg, name, tags={"protocol": protocol(cfg), "objective": cfg.objective}) as tracked:
        result = train(cfg, callbacks=[tracked.epoch_logger()])
        tracked.log_metrics(
            {
                "test_loss": result["test_loss"],
                "test_accuracy": result["test_accuracy"],
                "epochs_run": result["epochs_run"],
                "fit_seconds": result["fit_seconds"],
                "evaluate_seconds": result["evaluate_seconds"],
            }
        )
    history = result["history"]
    objective = history[cfg.objective][-1] if cfg.objective in history else None
    val_accuracy = history.get("val_accuracy", [float("nan")])[-1]
    print(
        f"{name}: test_accuracy={result['test_accuracy']:.4f} val_accuracy={val_accuracy:.4f} "
        f"{time.perf_counter() - started:.1f}s mlflow_run={tracked.run_id}",
        flush=True,
    )
    return objective
