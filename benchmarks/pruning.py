"""What does the pruner buy? The same study with and without it: epochs trained, wall time, best result.

    .venv/bin/python benchmarks/pruning.py [--trials 30] [--subset 10000] [--sweep-arg OVERRIDE ...]

Both studies run `src/run.py -m sweep` in this process with the same sampler seed and trial budget, on the
first `--subset` training images (validation stays the 5 000 held-out images); one keeps the sweep's pruner
(experiments/sweep.yaml's default, Optuna's MedianPruner), the other sets `hydra.sweeper.pruner=null`. Epochs are
counted from what every trial logged to MLflow (a pruned trial logs the epoch it was stopped after), the best
validation accuracy is the study's best COMPLETE trial. MLflow and Optuna write to a throwaway directory.

Last line: `epochs_saved=<1 - pruned epochs / unpruned epochs> best_val_delta=<points, pruned - unpruned>`.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
import optuna
from common import clear_data_caches, print_table, run_cli_in_process
from mlflow.tracking import MlflowClient
from trial_speed import create_stores

# Bounded so that both studies finish in minutes on 2 cores: the sweep's space, with the width capped at 1024.
DEFAULT_SWEEP_ARGS = ("model.units=tag(log, int(interval(32, 1024)))",)


def run_study(pruned: bool, trials: int, subset: int, extra: list[str]) -> dict[str, float]:
    """One study in this process; its trained epochs (from MLflow), verdicts and best value (from Optuna)."""
    clear_data_caches()
    with tempfile.TemporaryDirectory(prefix="pruning_") as scratch:
        mlflow_uri, optuna_url = f"sqlite:///{scratch}/mlflow.db", f"sqlite:///{scratch}/optuna.db"
        create_stores(mlflow_uri, optuna_url)
        name = f"pruning-{'on' if pruned else 'off'}-{uuid.uuid4().hex[:8]}"
        arguments = [
            "sweep",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.study_name={name}",
            f"hydra.sweeper.storage={optuna_url}",
            f"tracking.uri={mlflow_uri}",
            f"tracking.artifact_location={scratch}/mlruns",
            f"hydra.sweep.dir={scratch}/multirun",
            f"data.train_subset={subset}",
            *([] if pruned else ["hydra.sweeper.pruner=null"]),
            *extra,
        ]
        wall = run_cli_in_process(arguments)
        study = optuna.load_study(study_name=name, storage=optuna_url)
        states = [trial.state for trial in study.trials]
        client = MlflowClient(tracking_uri=mlflow_uri)
        runs = [
            run
            for experiment in client.search_experiments()
            for run in client.search_runs([experiment.experiment_id], max_results=10000)
            if run.data.tags.get("optuna.trial") is not None
        ]
        epochs = sum(len(client.get_metric_history(run.info.run_id, "loss")) for run in runs)
        complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    return {
        "wall": wall,
        "trials": len(states),
        "complete": len(complete),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "epochs": epochs,
        "best": max(trial.value for trial in complete) if complete else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trial budget of each study (default 30)")
    parser.add_argument("--subset", type=int, default=10000, help="training images per trial (default 10000)")
    parser.add_argument(
        "--sweep-arg",
        action="append",
        default=None,
        help=f"an override for both studies (repeatable; default: {' '.join(DEFAULT_SWEEP_ARGS)})",
    )
    args = parser.parse_args()
    if args.trials < 1 or args.subset < 1:
        raise ValueError("--trials and --subset must be positive")
    extra = list(DEFAULT_SWEEP_ARGS) if args.sweep_arg is None else args.sweep_arg

    results = {
        "MedianPruner (sweep default)": run_study(True, args.trials, args.subset, extra),
        "none": run_study(False, args.trials, args.subset, extra),
    }
    print(
        f"\n{args.trials} trials each, sampler seed from experiments/sweep.yaml, {args.subset} training images, "
        f"overrides: {' '.join(extra) or '(none)'}"
    )
    rows = [
        [
            name,
            str(result["trials"]),
            str(result["complete"]),
            str(result["pruned"]),
            str(result["failed"]),
            str(result["epochs"]),
            f"{result['wall']:.0f}",
            f"{result['best']:.4f}",
        ]
        for name, result in results.items()
    ]
    print_table(
        ["pruner", "trials", "complete", "pruned", "failed", "epochs trained", "wall s", "best val_acc"], rows
    )
    on, off = results["MedianPruner (sweep default)"], results["none"]
    saved = 1 - on["epochs"] / off["epochs"] if off["epochs"] else float("nan")
    print(
        f"epochs_saved={saved:.2f} wall_ratio={on['wall'] / off['wall']:.2f} "
        f"best_val_delta={100 * (on['best'] - off['best']):+.2f}"
    )


if __name__ == "__main__":
    main()
