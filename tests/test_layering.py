"""Training stands apart from tracking and search: a fit and a score load neither MLflow nor Optuna.

`train.py` promises it knows nothing of MLflow or Optuna; an import that runs back up (a figure helper that
imports the sweep, say) would break that promise silently, and every single run would pay for loading both. The
check runs in a fresh interpreter, since this test process has long imported both.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow  # A fresh interpreter that imports TensorFlow and trains.

FIT_AND_SCORE = """
import sys
from hydra import compose, initialize_config_dir

with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    # Hydra's plugin discovery imports the sweeper's light settings module while composing: that is Hydra's
    # doing, so the modules counted are the ones training itself adds.
    configs = [
        compose(
            config_name="config",
            overrides=["data.train_subset=200", "train.epochs=1", "train.verbose=0", f"train.loop={loop}"],
        )
        for loop in ("graph", "keras")
    ]
before = set(sys.modules)
from mnist_study.train import train

for cfg in configs:
    if train(cfg)["test_accuracy"] is None:
        raise SystemExit("the fit was not scored")
added = set(sys.modules) - before
loaded = list({name.split(".")[0] for name in sys.modules} & {"mlflow", "optuna"})
loaded += [name for name in added if name.startswith("mnist_study.sweep")]
print("LOADED", " ".join(sorted(loaded)))
"""


def test_a_fit_and_a_score_import_neither_mlflow_nor_optuna_nor_the_sweep() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", FIT_AND_SCORE, str(PROJECT_ROOT / "conf")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    loaded = [line for line in completed.stdout.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED "], f"training loaded: {loaded}"
