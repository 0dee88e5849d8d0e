"""The Sweeper class Hydra instantiates, and its config (`hydra/sweeper: mnist_study`).

Hydra scans this module at every start-up, so it stays light: the implementation (Optuna, MLflow) lives in
`mnist_study.sweeper` and loads only when a sweep is actually built.
"""
# No `from __future__ import annotations`: Hydra executes this module outside sys.modules, where dataclasses
# cannot resolve string annotations.

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

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
    """Checks everything a study needs, then delegates to `mnist_study.sweeper.StudySweeper` (ask / launch / tell).

    The checks run before MLflow is imported (seconds on a small machine) and before any study row or MLflow run is
    written. A rejected value ends the process with one line, `error: <key>=<value>: <what is allowed>`, and exit
    status 1: Hydra prints its own traceback for exceptions, but lets SystemExit through.
    """

    def __init__(self, **config: Any) -> None:
        from mnist_study.validation import check_sweeper_settings

        self.settings = config
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None
        _exit_on_error(
            check_sweeper_settings, config.get("study_name"), config.get("n_trials"), config.get("grace_period_s")
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        _exit_on_error(self._preflight, list(arguments))
        from mnist_study.sweeper import StudySweeper  # Optuna, MLflow and matplotlib load only now.

        sweeper = StudySweeper(**self.settings)
        sweeper.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
        return _exit_on_error(sweeper.sweep, arguments)

    def _preflight(self, arguments: list[str]) -> None:
        """The composed job config, the storage, and every value the search space can produce."""
        from mnist_study.validation import check_algorithm, check_space, check_storage, validate

        if self.config is None or self.hydra_context is None:
            raise ValueError("the sweeper was not set up by Hydra")
        config, loader = self.config, self.hydra_context.config_loader
        validate(config)
        check_storage(self.settings.get("storage"))
        for name in ("sampler", "pruner"):
            check_algorithm(name, _plain(self.settings.get(name)))
        groups = {
            group: sorted(loader.get_group_options(group))
            for group in config.hydra.runtime.choices
            if not group.startswith("hydra/")
        }
        params = {str(key): str(value) for key, value in (self.settings.get("params") or {}).items()}
        check_space(params, arguments, groups, lambda overrides: loader.load_sweep_config(config, overrides))


def _plain(node: Any) -> Any:
    """A config node as plain Python (Hydra hands the sweeper DictConfigs), anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _exit_on_error(function: Callable[..., Any], *args: Any) -> Any:
    """Call `function`; turn a ConfigError (or a store that fails mid-sweep) into one line and exit status 1."""
    from mnist_study.validation import ConfigError, StoreFailure

    try:
        return function(*args)
    except (ConfigError, StoreFailure) as error:
        sys.exit(f"error: {error}")
