"""A run's logged `config.yaml` read back, and brought up to today's keys with the values that run used.

Configs are logged in full, so a run can be trained again from its MLflow record alone. Keys added since a run was
logged are filled in here, the one place where old configs come in, with the value that reproduces what that run
did (not today's default): everything downstream reads a config with today's keys.
"""

from __future__ import annotations

import tempfile
from typing import Any

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_study.paths import option_file

# Keys added after runs were first logged, and what a run logged without them did.
ADDED_KEYS: dict[str, Any] = {
    # Trained by Keras's own `fit` before the project's epoch loop existed.
    "train.loop": "keras",
    # Scored with XLA whenever they trained with it.
    "train.jit_compile_scoring": True,
    # TensorFlow's default thread pools.
    "train.intra_op_threads": None,
    "train.inter_op_threads": None,
    # Float32 arithmetic, and dropout masks drawn by Keras's Dropout layer.
    "train.precision": "float32",
    "train.dropout_masks": "keras",
    # One hidden layer without input dropout or max-norm, the tutorial's loss, and a constant learning rate.
    "model.layers": 1,
    "model.units_2": None,
    "model.units_3": None,
    "model.input_dropout": 0.0,
    "model.max_norm": 0,
    "train.label_smoothing": 0.0,
    "schedule": {"name": "constant"},
    "tracking.plots": True,
    "tracking.log_model": False,
    "tracking.system_metrics": False,
    "tracking.system_metrics_interval_s": 10,
}
# Config groups that build their object from `_target_`; a run logged before that key existed names its option
# by `name` (the optimizer) or used the group's only option.
TARGET_GROUPS = ("data", "model", "optimizer")
ONLY_OPTION = {"data": "mnist", "model": "mlp"}
_MISSING = object()


def upgrade(cfg: DictConfig) -> DictConfig:
    """Fill in every key a run logged before it existed (in place; returns `cfg`)."""
    with open_dict(cfg):
        for key, value in ADDED_KEYS.items():
            if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                OmegaConf.update(cfg, key, value, force_add=True)
        for group in TARGET_GROUPS:
            if group in cfg and "_target_" not in cfg[group]:
                option = ONLY_OPTION.get(group) or cfg[group].name
                cfg[group]["_target_"] = OmegaConf.load(option_file(group, option))._target_
    return cfg


def load(client: MlflowClient, run_id: str) -> DictConfig:
    """The resolved config a run logged, upgraded, ready to train again outside any sweep and any tracking."""
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, "config.yaml", folder)
        cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig) or "seed" not in cfg:
        raise ValueError(f"run {run_id}: its config.yaml holds no seed; it cannot be re-derived")
    upgrade(cfg)
    with open_dict(cfg):
        # A rerun reports to no Optuna trial and under no parent; it only trains.
        if "trial" in cfg:
            cfg.trial.number = None
    return cfg
