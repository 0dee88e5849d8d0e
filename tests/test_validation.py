"""Config validation: every bad value is one line naming the key, checked without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from conftest import composed
from mnist_study.checks import ConfigError, validate
from mnist_study.paths import config_groups, group_options
from mnist_study.sweep.settings import SweepSettings, check_algorithms
from mnist_study.sweep.space import check_space

CONF = Path(__file__).resolve().parents[1] / "conf"


def config(*overrides: str) -> DictConfig:
    return composed(*overrides)


def test_baseline_config_is_valid() -> None:
    validate(config())


def test_the_tests_composed_configs_are_what_hydra_composes_and_each_a_copy_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """conftest.composed keeps one config per command: each call must still return a fresh, unresolved copy."""
    first = config("model.units=64")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        direct = compose(config_name="config", overrides=["model.units=64"])
    assert OmegaConf.to_container(first) == OmegaConf.to_container(direct)
    first.model.units = 7
    assert config("model.units=64").model.units == 64
    # Interpolations are resolved when read, under the environment of that moment, not when first composed.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert config("model.units=64").tracking.uri == "http://elsewhere:5000"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.units=0", "model.units"),
        ("model.units=abc", "model.units"),
        ("model.units=true", "model.units"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.activation=relux", "model.activation"),
        ("optimizer.name=adagrad", "optimizer.name"),
        ("optimizer.name=adam", "optimizer._target_"),
        ("optimizer.learning_rate=0", "optimizer.learning_rate"),
        ("train.epochs=-1", "train.epochs"),
        ("train.batch_size=1.5", "train.batch_size"),
        ("train.verbose=3", "train.verbose"),
        ("train.jit_compile=maybe", "train.jit_compile"),
        ("train.jit_compile_scoring=auto", "train.jit_compile_scoring"),
        ("train.precision=float16", "train.precision"),
        ("train.dropout_masks=numpy", "train.dropout_masks"),
        ("data.val_size=60000", "data.val_size"),
        ("data.train_subset=55001", "data.train_subset"),
        ("data.fit_on=both", "data.fit_on"),
        ("seed=-1", "seed"),
        ("objective=test_accuracy", "objective"),
        ("tracking.uri=mlflow.db", "tracking.uri"),
        ("tracking.uri=ftp://host/db", "tracking.uri"),
        ("tracking.system_metrics=yes", "tracking.system_metrics"),
        ("tracking.system_metrics_interval_s=0", "tracking.system_metrics_interval_s"),
        ("tracking.system_metrics_interval_s=true", "tracking.system_metrics_interval_s"),
    ],
)
def test_bad_value_names_its_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(config(override))
    message = str(error.value)
    assert message.startswith(f"{key}=")
    assert "\n" not in message


def test_update_only_compilation_needs_the_epoch_loop() -> None:
    validate(config("train.jit_compile=update"))
    expected = r"^train\.jit_compile='update': must be true, false or auto with train\.loop=keras"
    with pytest.raises(ConfigError, match=expected):
        validate(config("train.jit_compile=update", "train.loop=keras"))


def test_validation_objective_needs_a_validation_split() -> None:
    with pytest.raises(ConfigError, match=r"data\.val_size"):
        validate(config("data.val_size=0"))
    validate(config("data.val_size=0", "objective=loss"))


def test_unwritable_sqlite_store_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create a store"):
        validate(config(f"tracking.uri=sqlite:///{blocker}/mlflow.db"))


def test_unreachable_server_is_refused_with_its_password_hidden() -> None:
    with pytest.raises(ConfigError) as error:
        validate(config("tracking.uri=http://user:pa55word@127.0.0.1:9"))
    assert "no MLflow server answers" in str(error.value)
    assert "pa55word" not in str(error.value)


@pytest.mark.slow
def test_validation_does_not_import_tensorflow_or_mlflow() -> None:
    probe = "import sys, mnist_study.checks; print('tensorflow' in sys.modules, 'mlflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


GROUPS = {"optimizer": ["adam", "adamw", "nadam", "rmsprop", "sgd"], "model": ["mlp"]}
SPACE = {
    "model.units": "tag(log, int(interval(32, 4096)))",
    "optimizer": "choice(rmsprop, adam, sgd)",
    "train.epochs": "int(interval(1, 30))",
}


def recording_compose(composed: list[DictConfig]) -> Callable[[list[str]], DictConfig]:
    """A job compose (as the launcher's) that keeps every config it made."""

    def compose_job(overrides: list[str]) -> DictConfig:
        composed.append(config(*overrides))
        return composed[-1]

    return compose_job


def test_space_composes_each_group_option_and_sets_plain_keys_on_a_copy() -> None:
    composed: list[DictConfig] = []
    check_space(SPACE, [], GROUPS, recording_compose(composed))
    # Three optimizer options, plus one config on which both plain keys try both ends of their ranges.
    assert len(composed) == 4
    # The ends (32, 4096, 1, 30) were set on copies: the composed configs keep the baseline's values.
    assert {(c.model.units, c.train.epochs) for c in composed} == {(512, 5)}


def test_a_bad_end_of_a_plain_key_is_named_after_good_ones() -> None:
    space = {"train.epochs": "int(interval(1, 30))", "model.units": "int(interval(0, 64))"}
    with pytest.raises(ConfigError, match=r"model.units=int\(interval\(0, 64\)\): the value 0 gives model.units"):
        check_space(space, [], GROUPS, recording_compose([]))


def sweep_settings(**changes: object) -> SweepSettings:
    """The sweeper's default settings (conf/hydra/sweeper/mnist_study.yaml) with `changes`."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "hydra" / "sweeper" / "mnist_study.yaml"))
    # Hydra consumes its own keys (`_target_`, `_recursive_`) to build the sweeper; the rest are its arguments.
    defaults = {key: value for key, value in defaults.items() if not key.startswith("_")}
    return SweepSettings.from_hydra({**defaults, **changes})


@pytest.mark.parametrize(
    ("kind", "setting"),
    [
        ("sampler", {"_target_": "optuna.samplers.TPESampler", "seed": 0}),
        ("pruner", {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5}),
        ("pruner", {"_target_": "optuna.pruners.HyperbandPruner", "max_resource": 30}),
        ("pruner", None),
    ],
)
def test_samplers_and_pruners_optuna_can_build_are_accepted(kind: str, setting: dict | None) -> None:
    check_algorithms(sweep_settings(**{kind: setting}))


def test_a_pruner_given_as_sampler_is_refused_by_its_class() -> None:
    with pytest.raises(
        ConfigError, match=r"sampler._target_='optuna.pruners.NopPruner': must be an optuna.samplers"
    ):
        check_algorithms(sweep_settings(sampler={"_target_": "optuna.pruners.NopPruner"}))


def test_the_config_groups_are_the_ones_hydra_composes() -> None:
    chosen = {group for group in composed(hydra=True).hydra.runtime.choices if not group.startswith("hydra/")}
    assert set(config_groups()) == chosen
    assert group_options("optimizer") == sorted(path.stem for path in (CONF / "optimizer").glob("*.yaml"))
    assert group_options("no_such_group") is None


@pytest.mark.parametrize(
    ("argument", "refused"),
    [("optimizer=adagrad", True), ("+schedule=linear", True), ("optimizer=adam", False), ("units=7", False)],
)
def test_a_command_line_option_is_checked_against_its_group(argument: str, refused: bool) -> None:
    import run  # src/run.py: src/ is on the path, as the package is installed from it.

    if not refused:
        run.check_group_options([argument])
        return
    group, option = argument.lstrip("+").split("=")
    with pytest.raises(SystemExit) as exited:
        run.check_group_options([argument])
    known = ", ".join(group_options(group) or [])
    assert str(exited.value) == f"error: {argument}: {group}={option!r} is not an option; one of {known}"
