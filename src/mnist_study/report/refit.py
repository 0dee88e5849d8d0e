"""Refit each chosen configuration on the full training set with several seeds, each refit its own MLflow run.

Configs are composed with Hydra's compose API inside the report's own Hydra app, so every refit runs in this one
process (TensorFlow loads once). A refit's overrides are exactly what `python src/run.py` would be given to
recompute it, and the report quotes them as that command.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from hydra import compose
from omegaconf import DictConfig

from mnist_study.checks import validate
from mnist_study.report.selection import Candidate

# What makes a run a refit: no validation hold-out (fit on all training images). With no validation split the
# study's objective (val_accuracy) does not exist, and nothing is selected on a refit, so its objective is the
# training accuracy.
REFIT_OVERRIDES = ("data.val_size=0", "objective=accuracy")


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
    """What one refit measured, and the MLflow run that holds it."""

    refit: Refit
    run_id: str
    test_accuracy: float
    test_loss: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


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


def plan(candidates: Sequence[Candidate], seeds: Sequence[int], forwarded: Sequence[str]) -> list[Refit]:
    """Compose and validate every refit before any training starts, so a bad override costs seconds.

    `forwarded` are the report's own `data.*`, `train.*` and `tracking.*` overrides; they apply to every
    configuration and win over a trial's own values (e.g. `train.epochs=1` to shrink a test run).
    """
    refits = []
    for candidate in candidates:
        for seed in seeds:
            overrides = merge_overrides(candidate.overrides, forwarded, REFIT_OVERRIDES, [f"seed={seed}"])
            cfg = compose(config_name="config", overrides=list(overrides))
            validate(cfg)
            refits.append(Refit(candidate, seed, overrides, cfg))
    return refits


def run_refit(refit: Refit, report_run_id: str, study_name: str) -> RefitResult:
    """Train one refit inside its own MLflow run, a child of the report run, tagged `report`."""
    from omegaconf import open_dict

    from mnist_study.describe import protocol
    from mnist_study.tracked_training import train_tracked

    cfg = refit.cfg.copy()
    with open_dict(cfg):
        cfg.tracking.parent_run_id = report_run_id
        cfg.train.verbose = 0
    tags = {
        "report": study_name,
        "report.configuration": refit.candidate.label,
        "report.seed": str(refit.seed),
        "report.command": refit.command(),
        "protocol": protocol(cfg),
        "mlflow.source.name": "src/report.py",
    }
    started = time.perf_counter()
    name = f"{refit.candidate.label} seed={refit.seed}"
    what = f"A refit of {refit.candidate.label} at seed {refit.seed}, for the report on study `{study_name}`."
    trained = train_tracked(cfg, name, tags, what=what)
    result = trained.result
    return RefitResult(
        refit,
        trained.run_id,
        result["test_accuracy"],
        result["test_loss"],
        result["history"],
        time.perf_counter() - started,
    )
