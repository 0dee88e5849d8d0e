"""The Sweeper class Hydra instantiates, and its config (`hydra/sweeper: mnist_study`).

Hydra scans this module at every start-up, so it stays light: the implementation (Optuna, MLflow) lives in
`mnist_study.sweeper` and loads only when a sweep is actually built.
"""
# No `from __future__ import annotations`: Hydra executes this module outside sys.modules, where dataclasses
# cannot resolve string annotations.

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

import mnist_study.paths  # noqa: F401  (registers ${project_root:}, used by the default storage)


@dataclass
class MnistStudySweeperConf:
    _target_: str = "hydra_plugins.mnist_study_sweeper.mnist_study_sweeper.MnistStudySweeper"
    # The sampler and pruner reach the sweeper as configs, not objects: it reseeds the sampler for every ask and
    # stores the pruner's config on each trial, so a job in any process can rebuild it.
    _recursive_: bool = False
    study_name: str = "mnist-mlp"
    # Any Optuna RDB URL, or a journal file (`journal:///abs/path.journal`, or a bare path) for several processes.
    storage: str = "sqlite:///${project_root:}/optuna.db"
    # Trials with a verdict (COMPLETE, PRUNED, FAIL) the study should hold; rerunning resumes up to it.
    n_trials: int = 40
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0})
    # null disables pruning.
    pruner: Any = field(
        default_factory=lambda: {
            "_target_": "optuna.pruners.MedianPruner",
            "n_startup_trials": 5,
            "n_warmup_steps": 1,
        }
    )
    # The search space in Hydra's sweep grammar: choice(...), range(...), interval(...), int(...), tag(log, ...).
    params: dict[str, str] = field(default_factory=dict)
    # A RUNNING trial from another host (whose pid cannot be checked) is presumed dead after this many seconds.
    grace_period_s: float = 6 * 3600.0


ConfigStore.instance().store(
    group="hydra/sweeper", name="mnist_study", node=MnistStudySweeperConf, provider="mnist-study"
)


class MnistStudySweeper(Sweeper):
    """Delegates to `mnist_study.sweeper.StudySweeper` (ask / launch / tell against an Optuna study)."""

    def __init__(self, **config: Any) -> None:
        from mnist_study.sweeper import StudySweeper

        self.sweeper = StudySweeper(**config)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
