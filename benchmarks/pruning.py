"""What does the pruner buy? The same study with and without it: epochs trained, wall time, best result.

    .venv/bin/python benchmarks/pruning.py [--seeds 0 1 2] [--trials 30] [--subset 10000] [--sweep-arg ARG ...]
                                           [--pruned-only]

For every sampler seed, two studies run `src/run.py -m sweep` in this process with that seed and the same trial
budget, on the first `--subset` training images (validation stays the 5 000 held-out images); one keeps the
sweep's pruner (experiments/sweep.yaml's default, Optuna's MedianPruner), the other sets
`hydra.sweeper.pruner=null`. Epochs are counted from what every trial logged to MLflow (a pruned trial logs the
epoch it was stopped after), the best validation accuracy is the study's best COMPLETE trial. MLflow and Optuna
write to a throwaway directory.

One pair of studies is one draw, not an answer: the two share only TPE's random start-up trials, then each
proposes from its own history (a pruned trial's history is not a finished one). So the benchmark runs several
seeds and judges the medians.

`--pruned-only` runs only the pruned study of each seed: the unpruned study does not depend on the pruner's
settings, so a pruner variant (`--sweep-arg hydra.sweeper.pruner.n_startup_trials=7`) is compared against the
unpruned studies of an earlier full run, at half the cost. It prints the table and no comparison.

Last line: `epochs_saved=<median of 1 - pruned epochs / unpruned epochs> best_val_delta=<median, points, pruned -
unpruned>` and the wall ratio's median.
"""

from __future__ import annotations

import argparse
import statistics
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
# The two studies of a seed, as the table names them: the sweep's pruner (as the overrides leave it), and none.
PRUNED, UNPRUNED = "on", "off"


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


def compare(
    seed: int, trials: int, subset: int, extra: list[str], pruned_only: bool
) -> dict[str, dict[str, float]]:
    """The pruned and (unless `pruned_only`) the unpruned study for one sampler seed."""
    arguments = [f"hydra.sweeper.sampler.seed={seed}", *extra]
    results = {PRUNED: run_study(True, trials, subset, arguments)}
    if not pruned_only:
        results[UNPRUNED] = run_study(False, trials, subset, arguments)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds, two studies each (default 0 1 2)"
    )
    parser.add_argument("--trials", type=int, default=30, help="trial budget of each study (default 30)")
    parser.add_argument("--subset", type=int, default=10000, help="training images per trial (default 10000)")
    parser.add_argument(
        "--sweep-arg",
        action="append",
        default=None,
        help=f"an override for both studies (repeatable; default: {' '.join(DEFAULT_SWEEP_ARGS)})",
    )
    parser.add_argument(
        "--pruned-only", action="store_true", help="run only the pruned study of each seed (no comparison)"
    )
    args = parser.parse_args()
    if args.trials < 1 or args.subset < 1:
        raise ValueError("--trials and --subset must be positive")
    extra = list(DEFAULT_SWEEP_ARGS) if args.sweep_arg is None else args.sweep_arg

    pairs = {seed: compare(seed, args.trials, args.subset, extra, args.pruned_only) for seed in args.seeds}
    print(f"\n{args.trials} trials each, {args.subset} training images, overrides: {' '.join(extra) or '(none)'}")
    rows = [
        [
            str(seed),
            name,
            str(result["trials"]),
            str(result["complete"]),
            str(result["pruned"]),
            str(result["failed"]),
            str(result["epochs"]),
            f"{result['wall']:.0f}",
            f"{result['best']:.4f}",
        ]
        for seed, results in pairs.items()
        for name, result in results.items()
    ]
    print_table(
        ["seed", "pruner", "trials", "complete", "pruned", "failed", "epochs trained", "wall s", "best val_acc"],
        rows,
    )
    if args.pruned_only:
        return
    saved, walls, deltas = [], [], []
    for seed, results in pairs.items():
        on, off = results[PRUNED], results[UNPRUNED]
        saved.append(1 - on["epochs"] / off["epochs"] if off["epochs"] else float("nan"))
        walls.append(on["wall"] / off["wall"])
        deltas.append(100 * (on["best"] - off["best"]))
        print(
            f"seed {seed}: epochs_saved={saved[-1]:.2f} wall_ratio={walls[-1]:.2f} "
            f"best_val_delta={deltas[-1]:+.2f}"
        )
    print(
        f"epochs_saved={statistics.median(saved):.2f} wall_ratio={statistics.median(walls):.2f} "
        f"best_val_delta={statistics.median(deltas):+.2f}  (medians over {len(pairs)} seeds)"
    )


if __name__ == "__main__":
    main()
