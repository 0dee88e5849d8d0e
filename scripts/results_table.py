"""Print the README's table of a study's COMPLETE trials: parameters, validation and test accuracy, seconds.

`python scripts/results_table.py [--study mnist-mlp] [--storage URL] [--tracking-uri URI]`, over the
project's stores by default (OPTUNA_STORAGE / MLFLOW_TRACKING_URI when set, optuna.db / mlflow.db otherwise). The
study selects on `val_accuracy` only; `test_accuracy` is read from each trial's MLflow run, for the reader.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mnist_study.paths import study_storage, tracking_uri
from mnist_study.sweep.schema import BASELINE_ATTR, MLFLOW_RUN_ATTR, state_counts_text, trial_values
from mnist_study.sweep.storage import open_storage

COLUMNS = (
    "model.units",
    "optimizer",
    "optimizer.learning_rate",
    "model.dropout",
    "train.epochs",
    "train.batch_size",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="mnist-mlp")
    parser.add_argument("--storage", default=study_storage())
    parser.add_argument("--tracking-uri", default=tracking_uri())
    args = parser.parse_args()
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage))
    client = MlflowClient(args.tracking_uri)
    trials = study.get_trials(deepcopy=False)
    print(state_counts_text(trials))
    print("| trial | units | optimizer | lr | dropout | epochs | batch | val_accuracy | test_accuracy | seconds |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for trial in sorted(complete, key=lambda t: -t.value):
        values = trial_values(trial)
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        test = client.get_run(run_id).data.metrics.get("test_accuracy") if run_id else None
        label = f"{trial.number} (baseline)" if trial.user_attrs.get(BASELINE_ATTR) else str(trial.number)
        units, optimizer, rate, dropout, epochs, batch = (values.get(key) for key in COLUMNS)
        cells = [label, units, optimizer, f"{float(rate):.2e}", f"{float(dropout):.2f}", epochs, batch]
        cells += [f"{trial.value:.4f}", f"{test:.4f}" if test is not None else "—"]
        cells += [f"{trial.duration.total_seconds():.0f}"]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
