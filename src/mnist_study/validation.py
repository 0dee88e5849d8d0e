"""Check a composed config before any work starts: before TensorFlow loads, before MLflow or Optuna write a row.

Every problem is reported as one line that names the key, the value and what is allowed. This module imports
neither TensorFlow nor MLflow, so a typo costs a fraction of a second, not an import of either.
"""

from __future__ import annotations

import copy
import numbers
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_study.secrets import redact

TRAINING_IMAGES = 60000
OPTIMIZER_NAMES = ("rmsprop", "adam", "adamw", "nadam", "sgd")
ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish", "tanh", "sigmoid",
    "hard_sigmoid", "softplus", "softsign", "exponential", "linear",
)  # fmt: skip
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# How long to wait for an `mlflow server` to answer before calling its URI unreachable.
TRACKING_TIMEOUT_SECONDS = 10.0


class ConfigError(ValueError):
    """A config value that cannot work; its message is the one line the user sees."""


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError `key=value: must be <allowed>` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}={value!r}: must be {allowed}")


def check_model(cfg: DictConfig) -> None:
    units, dropout, activation = cfg.model.units, cfg.model.dropout, cfg.model.activation
    require(is_int(units) and units > 0, "model.units", units, "a positive integer")
    require(is_number(dropout) and 0 <= dropout < 1, "model.dropout", dropout, "a number in [0, 1)")
    require(activation in ACTIVATIONS, "model.activation", activation, f"one of {', '.join(ACTIVATIONS)}")


def check_optimizer(cfg: DictConfig) -> None:
    name, rate = cfg.optimizer.get("name"), cfg.optimizer.get("learning_rate")
    require(name in OPTIMIZER_NAMES, "optimizer.name", name, f"one of {', '.join(OPTIMIZER_NAMES)}")
    require(is_number(rate) and rate > 0, "optimizer.learning_rate", rate, "a number > 0")


def check_train(cfg: DictConfig) -> None:
    for key in ("epochs", "batch_size", "steps_per_execution", "eval_batch_size"):
        value = cfg.train[key]
        require(is_int(value) and value > 0, f"train.{key}", value, "a positive integer")
    deterministic = cfg.train.deterministic
    require(isinstance(deterministic, bool), "train.deterministic", deterministic, "true or false")
    jit = cfg.train.jit_compile
    require(isinstance(jit, bool) or jit == "auto", "train.jit_compile", jit, "true, false or auto")
    scoring = cfg.train.get("jit_compile_scoring", True)
    require(isinstance(scoring, bool), "train.jit_compile_scoring", scoring, "true or false")
    loop = cfg.train.get("loop", "keras")
    require(loop in ("graph", "keras"), "train.loop", loop, "graph or keras")
    require(cfg.train.verbose in (0, 1, 2, "auto"), "train.verbose", cfg.train.verbose, "0, 1, 2 or auto")


def check_data(cfg: DictConfig) -> None:
    val_size, subset, fit_on = cfg.data.val_size, cfg.data.train_subset, cfg.data.fit_on
    require(
        is_int(val_size) and 0 <= val_size < TRAINING_IMAGES,
        "data.val_size",
        val_size,
        f"an integer in 0..{TRAINING_IMAGES - 1}",
    )
    room = TRAINING_IMAGES - val_size
    require(
        subset is None or (is_int(subset) and 0 < subset <= room),
        "data.train_subset",
        subset,
        f"null or an integer in 1..{room} (60000 - data.val_size)",
    )
    require(fit_on in ("train", "test"), "data.fit_on", fit_on, "train or test")


def check_run(cfg: DictConfig) -> None:
    require(is_int(cfg.seed) and cfg.seed >= 0, "seed", cfg.seed, "a non-negative integer")
    objective = cfg.objective
    require(objective in HISTORY_METRICS, "objective", objective, f"one of {', '.join(HISTORY_METRICS)}")
    if objective.startswith("val_"):
        require(cfg.data.val_size > 0, "data.val_size", cfg.data.val_size, f"> 0 when objective={objective}")


def check_tracking(cfg: DictConfig) -> None:
    """The tracking store must be creatable (a local database) or reachable (a server) before a run starts."""
    uri, experiment = cfg.tracking.uri, cfg.tracking.experiment
    named = isinstance(experiment, str) and experiment != ""
    require(named, "tracking.experiment", experiment, "a non-empty name")
    require(isinstance(uri, str) and "://" in uri, "tracking.uri", uri, "a URI such as sqlite:///abs/mlflow.db")
    plots = cfg.tracking.get("plots", True)
    require(isinstance(plots, bool), "tracking.plots", plots, "true or false")
    scheme = uri.split("://", 1)[0]
    if scheme == "sqlite":
        check_writable_parent(uri.removeprefix("sqlite:///"), "tracking.uri", uri)
    elif scheme == "file":
        check_writable_parent(urllib.parse.urlparse(uri).path, "tracking.uri", uri)
    elif scheme in ("http", "https"):
        check_reachable(uri)
    elif not scheme.startswith(("postgresql", "mysql", "mssql", "databricks")):
        raise ConfigError(f"tracking.uri={redact(uri)}: unsupported scheme {scheme!r}; use sqlite, file, http(s)")


def check_writable_parent(path: str, key: str, value: str) -> None:
    """Create the store's folder now (MLflow would anyway), so that an unusable path fails before any work."""
    folder = Path(path or ".").resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError("not writable")
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{key}={redact(value)}: cannot create a store in {folder} ({reason})") from None


def check_reachable(uri: str) -> None:
    """A tracking server answers `/health`; give up after a bounded wait rather than hang a study."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=TRACKING_TIMEOUT_SECONDS):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(
            f"tracking.uri={redact(uri)}: no MLflow server answers ({reason}); start one (make services) "
            "or use the default sqlite store"
        ) from None


CHECKS: tuple[Callable[[DictConfig], None], ...] = (
    check_model,
    check_optimizer,
    check_train,
    check_data,
    check_run,
    check_tracking,
)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value that cannot work, in the order of the config groups."""
    for check in CHECKS:
        check(cfg)


# ---------------------------------------------------------------------------------------------------------------
# Sweeps: the sweeper's own settings, its storage and its search space, checked before any study row is written.

# How long to wait for a database server (the Optuna storage) before calling it unreachable.
STORAGE_TIMEOUT_SECONDS = 10
SPACE_GRAMMAR = (
    "choice(a, b, ...), range(start, stop[, step]), interval(low, high) with low < high, int(...), tag(log, ...)"
)


def check_sweeper_settings(study_name: Any, n_trials: Any, grace_period_s: Any) -> None:
    """The sweeper's scalar settings: a study needs a name, a budget and a positive grace period."""
    named = isinstance(study_name, str) and study_name.strip() != ""
    require(named, "hydra.sweeper.study_name", study_name, "a non-empty name")
    require(is_int(n_trials) and n_trials >= 1, "hydra.sweeper.n_trials", n_trials, "an integer >= 1")
    require(
        is_number(grace_period_s) and grace_period_s > 0,
        "hydra.sweeper.grace_period_s",
        grace_period_s,
        "a number of seconds > 0",
    )


def check_algorithm(kind: str, config: Any) -> None:
    """`hydra.sweeper.<kind>` (sampler or pruner) must build an Optuna one (null: TPE / no pruning).

    Built once here, before any trial: a typo in a `_target_` or an argument would otherwise fail every trial of
    the study in turn, each counted against its budget.
    """
    if config is None:
        return
    import optuna
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    key, base = (
        f"hydra.sweeper.{kind}",
        {"sampler": optuna.samplers.BaseSampler, "pruner": optuna.pruners.BasePruner}[kind],
    )
    allowed = f"a `_target_` config of an optuna.{kind}s class with its arguments, or null"
    require(isinstance(config, dict) and "_target_" in config, key, config, allowed)
    try:
        built = instantiate(config)
    except InstantiationException as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception", "")
        raise ConfigError(
            f"{key}._target_={config['_target_']}: cannot be built ({reason}); must be {allowed}"
        ) from None
    require(isinstance(built, base), f"{key}._target_", config["_target_"], f"an optuna.{kind}s class")


def check_storage(url: Any) -> None:
    """The Optuna storage must be a URL Optuna can open and, for a database server, answer within a bounded wait.

    Nothing is created here: a SQLite file appears only when the study is created, and a server is only pinged.
    """
    key = "hydra.sweeper.storage"
    allowed = "sqlite:////abs/optuna.db, postgresql://user:password@host/db, or a journal file path"
    require(isinstance(url, str) and url.strip() != "", key, url, allowed)
    if url.startswith("journal://") or "://" not in url:
        path = url.removeprefix("journal://")
        require(path != "", key, url, "journal:///abs/path.journal (a file path)")
        check_writable_parent(path, key, url)
        return
    from sqlalchemy import create_engine, exc
    from sqlalchemy.engine import make_url

    shown = redact(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except exc.NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        raise ConfigError(f"{key}={shown}: unsupported scheme {scheme!r}; use {allowed}") from None
    except (exc.ArgumentError, ValueError) as error:
        raise ConfigError(f"{key}={shown}: not a database URL ({hide(error, url)}); use {allowed}") from None
    if dialect.name == "sqlite":
        check_sqlite_path(parsed.database, key, shown)
        return
    # libpq and the MySQL drivers honour connect_timeout; without it an unroutable host hangs for minutes.
    connect_args = {"connect_timeout": STORAGE_TIMEOUT_SECONDS} if dialect.name in ("postgresql", "mysql") else {}
    try:
        engine = create_engine(url, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except ImportError as error:
        raise ConfigError(f"{key}={shown}: its database driver is not installed ({hide(error, url)})") from None
    except Exception as error:  # Every driver has its own exception types; all mean "cannot use this storage".
        reason = hide(getattr(error, "orig", None) or error, url)
        raise ConfigError(
            f"{key}={shown}: cannot connect within {STORAGE_TIMEOUT_SECONDS} s ({reason}); is the server up "
            "(make services)?"
        ) from None


def check_sqlite_path(database: str | None, key: str, shown: str) -> None:
    """A SQLite storage is a file in an existing, writable folder (SQLite creates the file, never the folder)."""
    if not database or database == ":memory:":
        raise ConfigError(f"{key}={shown}: must name a database file, e.g. sqlite:////abs/path/optuna.db")
    folder = Path(database).resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"{key}={shown}: the folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{key}={shown}: the folder {folder} is not writable")


def hide(error: object, url: str) -> str:
    """The first line of an error message, with the URL's password removed wherever it appears."""
    text = redact(str(error)).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    password = urllib.parse.urlsplit(url).password
    return text.replace(password, "***") if password else text


def check_space(
    params: dict[str, str],
    arguments: list[str],
    groups: dict[str, list[str]],
    compose: Callable[[list[str]], DictConfig],
) -> None:
    """Every sweep expression must be an Optuna distribution, and every value it can produce a valid config.

    `compose(overrides)` builds a job's config the way the launcher will. Each parameter is tried alone at the ends
    of its range (and at every choice of a categorical), so the message names the parameter and value at fault.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import CategoricalDistribution

    from mnist_study.search_space import format_value, parse_space, to_distribution

    parser = OverridesParser.create()
    # The command line replaces a configured expression for the same key, as in `parse_space`.
    lines = {key: f"{key}={value}" for key, value in params.items()}
    for line in arguments:
        lines[parser.parse_override(line).get_key_element()] = line
    for line in lines.values():
        override = parser.parse_override(line)
        if not override.is_sweep_override():
            continue
        try:
            to_distribution(override)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{line}: cannot be an Optuna distribution ({error}); use {SPACE_GRAMMAR}") from None
    space = parse_space(params, arguments)
    base: DictConfig | None = None  # Composed on first need, then shared by every plain key.
    for key, distribution in space.distributions.items():
        if isinstance(distribution, CategoricalDistribution):
            values = list(distribution.choices)
        else:
            values = [distribution.low, distribution.high]
        for value in values:
            try:
                if key in groups:
                    # A group's option is a different file: only Hydra can say whether it composes.
                    config = compose(space.job_overrides({key: value}))
                else:
                    # A plain key is set on one composed config: a compose costs about 0.1 s, and the default
                    # space has 16 values to try.
                    if base is None:
                        base = compose(space.job_overrides({}))
                    config = with_value(base, key, value)
            except Exception as error:  # Hydra raises several types; each means this value cannot compose.
                raise ConfigError(composition_error(space.expressions[key], key, value, groups, error)) from None
            try:
                for check in CHECKS:
                    if check is not check_tracking:  # The store was checked once, on the base config.
                        check(config)
            except ConfigError as error:
                raise ConfigError(
                    f"{space.expressions[key]}: the value {format_value(value)} gives {error}"
                ) from None


def with_value(config: DictConfig, key: str, value: Any) -> DictConfig:
    """A copy of `config` with the existing `key` set to `value`, as the override `key=value` would set it."""
    missing = object()
    if OmegaConf.select(config, key, default=missing, throw_on_missing=False) is missing:
        raise ValueError(f"Could not override '{key}'. Key '{key}' is not in the config")
    changed = copy.deepcopy(config)  # DictConfig.copy() shares nested nodes, so it would change `config` too.
    OmegaConf.update(changed, key, value, merge=False)
    return changed


def composition_error(
    expression: str, key: str, value: Any, groups: dict[str, list[str]], error: Exception
) -> str:
    """One line for a trial config Hydra cannot compose: an option a group lacks, or a key the config lacks."""
    from mnist_study.search_space import format_value

    if key in groups:
        return f"{expression}: {key}={format_value(value)} is not an option; one of {', '.join(groups[key])}"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{expression}: {key} is not a key of the config; sample a key it has (e.g. model.units) or a config "
        f"group ({', '.join(sorted(groups))}) [{reason}]"
    )


class StoreFailure(RuntimeError):
    """The MLflow store or the Optuna storage failed while a sweep ran; its message is the one line users see."""
