"""The Sweeper class Hydra discovers; its settings are conf/hydra/sweeper/mnist_study.yaml.

Hydra scans this module at every start-up, so it stays light: the implementation (Optuna, MLflow) lives in
`mnist_study.sweep` and loads only when a sweep is actually built.
"""

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

import mnist_study.paths  # noqa: F401  (registers ${project_root:}, used by the default storage)
from mnist_study.checks import ConfigError
from mnist_study.sweep.settings import SweepSettings


class MnistStudySweeper(Sweeper):
    """Checks everything a study needs, then delegates to `mnist_study.sweep.sweeper.StudySweeper`.

    The checks run before MLflow is imported (seconds on a small machine) and before any study row or MLflow run is
    written. A rejected value ends the process with one line, `error: <key>=<value>: <what is allowed>`, and exit
    status 1: Hydra prints its own traceback for exceptions, but lets SystemExit through.
    """

    def __init__(self, **config: Any) -> None:
        # Hydra builds the sweeper within moments of the command's start: `timeout_s` counts from here.
        self.started = time.monotonic()
        self.settings: SweepSettings = exit_on_error(SweepSettings.from_hydra, config)
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        exit_on_error(self._preflight, list(arguments))
        from mnist_study.sweep.stores import StoreFailure  # Optuna, MLflow and matplotlib load only now.
        from mnist_study.sweep.sweeper import StudySweeper

        sweeper = StudySweeper(self.settings, self.hydra_context, self.task_function, self.config, self.started)
        return exit_on_error(sweeper.sweep, arguments, errors=(ConfigError, StoreFailure))

    def _preflight(self, arguments: list[str]) -> None:
        """The composed job config, the storage, the sampler and pruner, and every value the space can produce."""
        from mnist_study.checks import require, validate
        from mnist_study.metrics import objective_names
        from mnist_study.sweep.known import check_known
        from mnist_study.sweep.settings import check_algorithms
        from mnist_study.sweep.space import check_space, parse_space
        from mnist_study.sweep.storage import check_storage

        if self.config is None or self.hydra_context is None:
            raise ValueError("the sweeper was not set up by Hydra")
        config, loader = self.config, self.hydra_context.config_loader
        validate(config)
        several = len(objective_names(config.objective)) > 1
        pruned = self.settings.pruner is not None
        prune_rule = "null for a study with several objectives (Optuna prunes single-objective studies only)"
        target = (self.settings.pruner or {}).get("_target_")
        require(not (several and pruned), "hydra.sweeper.pruner._target_", target, prune_rule)
        check_storage(self.settings.storage)
        check_algorithms(self.settings)
        groups = {
            group: sorted(loader.get_group_options(group))
            for group in config.hydra.runtime.choices
            if not group.startswith("hydra/")
        }
        compose = functools.partial(loader.load_sweep_config, config)
        settings = self.settings
        check_space(settings.params, arguments, groups, compose, settings.conditional)
        check_known(settings, parse_space(settings.params, arguments, settings.conditional))


def exit_on_error(
    function: Callable[..., Any], *args: Any, errors: tuple[type[Exception], ...] = (ConfigError,)
) -> Any:
    """Call `function`; turn one of `errors` into one line and exit status 1."""
    try:
        return function(*args)
    except errors as error:
        sys.exit(f"error: {error}")
