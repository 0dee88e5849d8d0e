"""What the benchmarks share: the project on sys.path, composed configs, an in-process sweep, and medians.

The benchmarks are scripts, not tests: `make test` never runs them. Each imports this module first, so that it
runs from any working directory as `.venv/bin/python benchmarks/<name>.py`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import runpy
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: E402

# isort: split
import keras  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import mnist_study.data as data_module  # noqa: E402
import mnist_study.paths  # noqa: E402, F401  (registers ${project_root:})
import mnist_study.train as train_module  # noqa: E402
from mnist_study.epoch_loop import EpochLoop  # noqa: E402


def compose_configs(variants: dict[str, Sequence[str]]) -> dict[str, DictConfig]:
    """Compose one config per variant from conf/ (as `python src/run.py <overrides>` would) and return them.

    Composing inside Hydra's context and leaving it again keeps Hydra's global state clear for a later sweep.
    """
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return {name: compose("config", overrides=list(overrides)) for name, overrides in variants.items()}


def median(values: Sequence[float]) -> float:
    """The median; the machine is shared and noisy, so a median of alternating repetitions is what we compare."""
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def clear_data_caches() -> None:
    """Forget the memoised MNIST arrays, splits and tensors, so the next trial pays data preparation again."""
    data_module.forget_loaded_data()
    train_module.forget_tensors()


class FitClock:
    """Accumulates wall time spent fitting and scoring, however it is called: `fit` and `evaluate` of both
    `keras.Model` (`train.loop=keras`) and the project's `EpochLoop` (`train.loop=graph`).

    Both `fit`s call their `evaluate` for the validation data; only the outermost call is timed, so nothing is
    counted twice. Patching the class (rather than asking the job for its timings) also counts pruned trials,
    whose jobs never report their own fit time.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(owner: Any, *args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return method(owner, *args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - started
                    self.calls += 1

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[FitClock]:
        """Patch `fit` and `evaluate` for the duration of the block, then restore them."""
        originals = {
            (owner, name): owner.__dict__.get(name)
            for owner in (keras.Model, EpochLoop)
            for name in ("fit", "evaluate")
        }
        resolved = {key: getattr(*key) for key in originals}
        try:
            for (owner, name), method in resolved.items():
                setattr(owner, name, self._wrap(method))
            yield self
        finally:
            for (owner, name), original in originals.items():
                if original is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)


class Stopwatches:
    """Wall time inside chosen functions (outermost calls only, per label), patched in for the duration of a block.

    A target is (label, owner, attribute); the owner is a "package.module[:Class]" path or the object itself (a
    module, a class, an instance). Used to say where a sweep's or a request's time goes; a target whose owner or
    attribute does not exist (the code moved) is skipped, never an error, since the breakdown is informative only.
    """

    def __init__(self, targets: Sequence[tuple[str, Any, str]]) -> None:
        self.targets = list(targets)
        self.seconds: dict[str, float] = {label: 0.0 for label, _, _ in targets}
        self.calls: dict[str, int] = {label: 0 for label, _, _ in targets}
        self._depth: dict[str, int] = {label: 0 for label, _, _ in targets}

    def _timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        # functools.wraps keeps the signature visible: MLflow's request handler inspects `predict` for `params`.
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth[label] += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth[label] -= 1
                if self._depth[label] == 0:
                    self.seconds[label] += time.perf_counter() - started
                    self.calls[label] += 1

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stopwatches]:
        """Patch every target that exists, then restore each exactly as it was."""
        # (owner, attribute, original, whether the owner itself held it: else the patch shadows an inherited or
        # bound attribute, and restoring means deleting it again)
        restore: list[tuple[Any, str, Any, bool]] = []
        try:
            for label, where, attribute in self.targets:
                owner = _owner(where)
                if owner is None or not hasattr(owner, attribute):
                    continue
                own = attribute in vars(owner)
                # The raw dictionary entry keeps a classmethod or staticmethod what it is.
                original = vars(owner)[attribute] if own else getattr(owner, attribute)
                if isinstance(original, classmethod):
                    replacement: Any = classmethod(self._timed(label, original.__func__))
                elif isinstance(original, staticmethod):
                    replacement = staticmethod(self._timed(label, original.__func__))
                else:
                    replacement = self._timed(label, original)
                setattr(owner, attribute, replacement)
                restore.append((owner, attribute, original, own))
            yield self
        finally:
            for owner, attribute, original, own in reversed(restore):
                if own:
                    setattr(owner, attribute, original)
                else:
                    delattr(owner, attribute)


def _owner(where: Any) -> Any:
    """The object a "package.module[:Class]" path names (None if it does not exist), or `where` itself."""
    if not isinstance(where, str):
        return where
    module_name, _, class_name = where.partition(":")
    try:
        owner = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(owner, class_name, None) if class_name else owner


def run_cli_in_process(arguments: Sequence[str]) -> float:
    """Run `python src/run.py <arguments>` inside this process and return its wall time in seconds.

    Exactly the command-line path (bare-word shim, Hydra, the sweeper, MLflow, training), minus the Python and
    TensorFlow start-up that a new process would pay once. The script runs as `__main__`, as it would from the
    shell, so that Hydra finds conf/ relative to it.
    """
    saved = sys.argv
    sys.argv = [str(ROOT / "src" / "run.py"), *arguments]
    started = time.perf_counter()
    try:
        runpy.run_path(str(ROOT / "src" / "run.py"), run_name="__main__")
    finally:
        sys.argv = saved
    return time.perf_counter() - started


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain, aligned text table (Markdown-compatible, so it pastes into the README as it is)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for index, row in enumerate([headers, *rows]):
        print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def create_stores(mlflow_uri: str, optuna_url: str) -> None:
    """Make MLflow's and Optuna's SQLite schemas exist, as they do in any project that has run once."""
    import optuna
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=mlflow_uri).search_experiments()
    optuna.storages.RDBStorage(optuna_url)
