"""Check a job's composed config before any work starts: before TensorFlow loads, before MLflow or Optuna write.

Every problem is reported as one line that names the key, the value and what is allowed. This module imports
neither TensorFlow nor MLflow, so a typo costs a fraction of a second, not an import of either.
"""

from __future__ import annotations

import functools
import numbers
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_study.metrics import COST_METRICS, HISTORY_METRICS, objective_names
from mnist_study.paths import group_options, option_file
from mnist_study.precision import PRECISIONS
from mnist_study.secrets import redact

TRAINING_IMAGES = 60000
# The deepest network of the family (model.layers); mnist_study.model builds it.
MAX_LAYERS = 3
ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish", "tanh", "sigmoid",
    "hard_sigmoid", "softplus", "softsign", "exponential", "linear",
)  # fmt: skip
# Who draws a training step's dropout masks in the epoch loop: the model's Dropout layers, or the loop itself
# (src/mnist_study/dropout_masks.py).
DROPOUT_MASKS = ("keras", "hashed")
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
    model = cfg.model
    units, activation = model.units, model.activation
    deeper = (model.get("units_2"), model.get("units_3"))
    rates = (model.get("dropout", 0.0), model.get("input_dropout", 0.0))
    check_network(units, model.get("layers", 1), *deeper, *rates, model.get("max_norm"))
    require(activation in ACTIVATIONS, "model.activation", activation, f"one of {', '.join(ACTIVATIONS)}")


def check_network(
    units: Any,
    layers: Any = 1,
    units_2: Any = None,
    units_3: Any = None,
    dropout: Any = 0.0,
    input_dropout: Any = 0.0,
    max_norm: Any = None,
) -> None:
    """The network's shape and regularisation (`model.*`), the rules `check_model` and `model.build_model` both
    apply: widths, depth, dropout rates and the max-norm bound."""
    require(is_int(units) and units > 0, "model.units", units, "a positive integer")
    allowed_layers = f"an integer in 1..{MAX_LAYERS} (hidden layers)"
    require(is_int(layers) and 1 <= layers <= MAX_LAYERS, "model.layers", layers, allowed_layers)
    for position, width in enumerate((units_2, units_3), start=2):
        deeper = "a positive integer, or null for model.units"
        require(width is None or (is_int(width) and width > 0), f"model.units_{position}", width, deeper)
    for key, rate in (("dropout", dropout), ("input_dropout", input_dropout)):
        require(is_number(rate) and 0 <= rate < 1, f"model.{key}", rate, "a number in [0, 1)")
    bounded = max_norm is None or (is_number(max_norm) and max_norm >= 0)
    require(bounded, "model.max_norm", max_norm, "a number >= 0 (0 or null: no bound)")


def check_schedule(cfg: DictConfig) -> None:
    """A schedule's warm-up ends before the fit does (the `schedule` group; a config without one is constant)."""
    schedule = cfg.get("schedule")
    if schedule is None or "_target_" not in schedule:
        return
    warmup, epochs = schedule.get("warmup_epochs", 0), cfg.train.epochs
    require(
        is_int(warmup) and 0 <= warmup < epochs,
        "schedule.warmup_epochs",
        warmup,
        f"an integer in 0..{epochs - 1} (fewer than train.epochs={epochs})",
    )
    alpha = schedule.get("alpha", 0.0)
    require(is_number(alpha) and 0 <= alpha <= 1, "schedule.alpha", alpha, "a number in [0, 1] (the floor)")


@functools.cache
def optimizer_targets() -> dict[str, str]:
    """Each file of the optimizer group (conf/optimizer/<name>.yaml) by name, with the class it builds."""
    options = group_options("optimizer") or []
    return {option: str(OmegaConf.load(option_file("optimizer", option))["_target_"]) for option in options}


def check_optimizer(cfg: DictConfig) -> None:
    """`optimizer.name` is a file of the optimizer group, and `_target_` the class that file builds: a name
    changed alone would label one optimizer's run with another's name."""
    target, name, rate = (cfg.optimizer.get(key) for key in ("_target_", "name", "learning_rate"))
    targets = optimizer_targets()
    require(name in targets, "optimizer.name", name, f"one of {', '.join(targets)} (the files in conf/optimizer)")
    require(
        target == targets[name],
        "optimizer._target_",
        target,
        f"{targets[name]} for optimizer.name={name}; choose an optimizer with optimizer=<name>",
    )
    require(is_number(rate) and rate > 0, "optimizer.learning_rate", rate, "a number > 0")


def check_train(cfg: DictConfig) -> None:
    for key in ("epochs", "batch_size", "steps_per_execution", "eval_batch_size"):
        value = cfg.train[key]
        require(is_int(value) and value > 0, f"train.{key}", value, "a positive integer")
    deterministic = cfg.train.deterministic
    require(isinstance(deterministic, bool), "train.deterministic", deterministic, "true or false")
    jit = cfg.train.jit_compile
    allowed = "true, false, auto or update"
    require(isinstance(jit, bool) or jit in ("auto", "update"), "train.jit_compile", jit, allowed)
    scoring = cfg.train.jit_compile_scoring
    require(isinstance(scoring, bool), "train.jit_compile_scoring", scoring, "true or false")
    loop = cfg.train.loop
    require(loop in ("graph", "keras"), "train.loop", loop, "graph or keras")
    keras_choices = "true, false or auto with train.loop=keras (Keras's fit compiles all of a step or none)"
    require(loop == "graph" or jit != "update", "train.jit_compile", jit, keras_choices)
    precision = cfg.train.precision
    require(precision in PRECISIONS, "train.precision", precision, " or ".join(PRECISIONS))
    masks = cfg.train.dropout_masks
    require(masks in DROPOUT_MASKS, "train.dropout_masks", masks, " or ".join(DROPOUT_MASKS))
    require(cfg.train.verbose in (0, 1, 2, "auto"), "train.verbose", cfg.train.verbose, "0, 1, 2 or auto")
    check_label_smoothing(cfg.train.get("label_smoothing", 0.0))


def check_label_smoothing(smoothing: Any) -> None:
    """`train.label_smoothing`, as `check_train` and the training loss (`losses.per_image_loss`) both check it."""
    allowed = "a number in [0, 1) (0: no smoothing)"
    require(is_number(smoothing) and 0 <= smoothing < 1, "train.label_smoothing", smoothing, allowed)


def check_data(cfg: DictConfig) -> None:
    check_split(cfg.data.val_size, cfg.data.train_subset, cfg.data.fit_on)


def check_split(val_size: Any, subset: Any, fit_on: Any) -> None:
    """The split of MNIST's training images (`data.*`), as `check_data` and `data.make_split` both check it."""
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
    names = objective_names(cfg.objective) if isinstance(cfg.objective, str | ListConfig) else [cfg.objective]
    allowed = (*HISTORY_METRICS, *COST_METRICS)
    shown = cfg.objective if isinstance(cfg.objective, str) else f"[{','.join(map(str, names))}]"
    for objective in names:
        require(objective in allowed, "objective", shown, f"one of {', '.join(allowed)}, or a list of them")
        if objective.startswith("val_"):
            require(cfg.data.val_size > 0, "data.val_size", cfg.data.val_size, f"> 0 when objective={objective}")
    require(len(set(names)) == len(names) >= 1, "objective", shown, "each name once")
    require(any(name in HISTORY_METRICS for name in names), "objective", shown, "at least one accuracy or loss")


def check_tracking(cfg: DictConfig) -> None:
    """The tracking store must be creatable (a local database) or reachable (a server) before a run starts."""
    uri, experiment = cfg.tracking.uri, cfg.tracking.experiment
    named = isinstance(experiment, str) and experiment != ""
    require(named, "tracking.experiment", experiment, "a non-empty name")
    require(isinstance(uri, str) and "://" in uri, "tracking.uri", uri, "a URI such as sqlite:///abs/mlflow.db")
    for key in ("plots", "log_model", "system_metrics"):
        value = cfg.tracking[key]
        require(isinstance(value, bool), f"tracking.{key}", value, "true or false")
    interval = cfg.tracking.system_metrics_interval_s
    sampled = isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0
    require(sampled, "tracking.system_metrics_interval_s", interval, "a number of seconds > 0")
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


def unreachable(uri: str) -> str | None:
    """Why no MLflow server answers `/health` at `uri` within a bounded wait (MLflow's own client would retry for
    minutes), or None when one does."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=TRACKING_TIMEOUT_SECONDS):
            return None
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def check_reachable(uri: str) -> None:
    """A tracking server answers `/health`; give up after a bounded wait rather than hang a study."""
    reason = unreachable(uri)
    if reason is not None:
        raise ConfigError(
            f"tracking.uri={redact(uri)}: no MLflow server answers ({reason}); start one (make services) "
            "or use the default sqlite store"
        ) from None


CHECKS: tuple[Callable[[DictConfig], None], ...] = (
    check_model,
    check_optimizer,
    check_train,
    check_schedule,
    check_data,
    check_run,
    check_tracking,
)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value that cannot work, in the order of the config groups."""
    for check in CHECKS:
        check(cfg)
