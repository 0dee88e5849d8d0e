"""Training stands apart from tracking and search: a fit and a score load neither MLflow nor Optuna; and a
report that trains nothing in its own process loads no TensorFlow.

`train.py` promises it knows nothing of MLflow or Optuna; an import that runs back up (a figure helper that
imports the sweep, say) would break that promise silently, and every single run would pay for loading both. The
report's refits train in worker processes or are reused, so its own process needs no TensorFlow: loading it costs
seconds at every start, after every kill. The checks run in a fresh interpreter, since this test process has long
imported all of them.
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


# The report's steps that run in its own process whatever trains the refits: its modules, re-scoring when it is
# off (the default), the environment facts.
REPORT_WITHOUT_TRAINING = """
import sys
from hydra import compose, initialize_config_dir
from mnist_study.report import build, environment, rescore

with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose(config_name="config", overrides=["train.intra_op_threads=1", "train.inter_op_threads=1"])
if rescore.run([]) != []:
    raise SystemExit("re-scoring nothing scored something")
facts = {fact.name: fact.value for fact in environment.facts(cfg)}
print("LOADED", " ".join(sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras"})))
print("THREADS", facts["TF intra-op threads per refit"], facts["TF inter-op threads per refit"])
"""


def run_fresh(code: str) -> list[str]:
    """Run `code` in a fresh interpreter (argv[1]: the config folder); its output lines."""
    completed = subprocess.run(
        [sys.executable, "-c", code, str(PROJECT_ROOT / "conf")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout.splitlines()


def test_a_fit_and_a_score_import_neither_mlflow_nor_optuna_nor_the_sweep() -> None:
    loaded = [line for line in run_fresh(FIT_AND_SCORE) if line.startswith("LOADED")]
    assert loaded == ["LOADED "], f"training loaded: {loaded}"


def test_a_report_that_trains_nothing_itself_loads_no_tensorflow_and_states_its_refits_threads() -> None:
    lines = run_fresh(REPORT_WITHOUT_TRAINING)
    assert [line for line in lines if line.startswith("LOADED")] == ["LOADED "], lines
    # What the refits' config set, not what this process's (unused) TensorFlow would say.
    assert "THREADS 1 1" in lines
