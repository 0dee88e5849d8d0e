"""What does a pruner buy? The same study with and without it: epochs trained, wall time, best result.

    .venv/bin/python benchmarks/pruning.py [--seeds 0 1 2 3 4] [--trials N] [--subset 10000]
                                           [--sweep-arg ARG ...] [--variant 'LABEL|OVERRIDE|...' ...]
                                           [--no-unpruned] [--results FILE]

For every sampler seed, one study per arm runs `src/run.py -m sweep` in this process with that seed and the same
trial budget (the sweep's own, `experiments/sweep.yaml`, unless `--trials`), on the first `--subset` training
images (validation stays the 5 000 held-out images). The arms: `off` (`hydra.sweeper.pruner=null`), `default`
(the sweep's pruner as the overrides leave it) and every `--variant`, a label and the overrides that make its
pruner or sampler. Arms alternate within each seed. Epochs are counted from what every trial logged to MLflow (a
pruned trial logs the epoch it was stopped after); the best validation accuracy is the study's best COMPLETE
trial. MLflow and Optuna write to a throwaway directory; `--results` appends one JSON line per study.

One pair of studies is one draw, not an answer: the studies of a seed share only TPE's random start-up trials,
then each proposes from its own history (a pruned trial's history is not a finished one). So the benchmark runs
several seeds and judges the medians.

`--no-unpruned` skips the `off` arm: it does not depend on the pruner, so a new variant can be compared with the
unpruned studies of an earlier run (`--results` of that run) at a fraction of the cost.

Last lines, one per pruned arm: `<arm>: epochs_saved=<median of 1 - arm epochs / unpruned epochs>
best_val_delta=<median, points, arm - unpruned> wall_ratio=<median>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from pathlib import Path

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
import optuna
from common import clear_data_caches, create_stores, median, print_table, run_cli_in_process
from mlflow.tracking import MlflowClient

# Bounded so that a study finishes in minutes on 2 cores: the sweep's space, with the width capped at 1024.
DEFAULT_SWEEP_ARGS = ("model.units=tag(log, int(interval(256, 1024)))",)
# The arms every seed runs unless told otherwise: no pruner, and the sweep's own.
UNPRUNED, DEFAULT = "off", "default"
ARM_OVERRIDES = {UNPRUNED: ["hydra.sweeper.pruner=null"], DEFAULT: []}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`LABEL|OVERRIDE|OVERRIDE...` as (label, overrides)."""
    label, *overrides = text.split("|")
    if not label or not overrides or label in ARM_OVERRIDES:
        raise ValueError(f"--variant {text!r}: write 'LABEL|OVERRIDE|...' with a label other than off/default")
    return label, overrides


def run_study(arm: str, overrides: list[str], trials: int | None, subset: int) -> dict[str, float]:
    """One study in this process; its trained epochs (from MLflow), verdicts and best value (from Optuna)."""
    clear_data_caches()
    with tempfile.TemporaryDirectory(prefix="pruning_") as scratch:
        mlflow_uri, optuna_url = f"sqlite:///{scratch}/mlflow.db", f"sqlite:///{scratch}/optuna.db"
        create_stores(mlflow_uri, optuna_url)
        name = f"pruning-{arm}-{uuid.uuid4().hex[:8]}"
        arguments = [
            "sweep",
            *([] if trials is None else [f"hydra.sweeper.n_trials={trials}"]),
            f"hydra.sweeper.study_name={name}",
            f"hydra.sweeper.storage={optuna_url}",
            f"tracking.uri={mlflow_uri}",
            f"tracking.artifact_location={scratch}/mlruns",
            f"hydra.sweep.dir={scratch}/multirun",
            f"data.train_subset={subset}",
            *overrides,
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
        best = max(complete, key=lambda trial: trial.value) if complete else None
    return {
        "wall": wall,
        "trials": len(states),
        "complete": len(complete),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "epochs": epochs,
        "best": best.value if best else float("nan"),
        "best_trial": best.number if best else -1,
    }


def read_results(path: Path) -> list[dict]:
    """The JSON lines of earlier runs (one study each)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def summarize(results: list[dict], seeds: list[int]) -> None:
    """Per pruned arm, the medians over seeds of epochs saved, best delta and wall ratio against `off`."""
    unpruned = {row["seed"]: row for row in results if row["arm"] == UNPRUNED}
    arms = dict.fromkeys(row["arm"] for row in results if row["arm"] != UNPRUNED)
    for arm in arms:
        saved, deltas, walls = [], [], []
        for row in results:
            reference = unpruned.get(row["seed"])
            if row["arm"] != arm or row["seed"] not in seeds or reference is None:
                continue
            saved.append(1 - row["epochs"] / reference["epochs"])
            deltas.append(100 * (row["best"] - reference["best"]))
            walls.append(row["wall"] / reference["wall"])
        if saved:
            per_seed = ", ".join(
                f"{fraction:.0%} / {delta:+.2f}" for fraction, delta in zip(saved, deltas, strict=True)
            )
            print(
                f"{arm}: epochs_saved={median(saved):.2f} "
                f"best_val_delta={median(deltas):+.2f} wall_ratio={median(walls):.2f}  "
                f"(medians over {len(saved)} seeds; per seed: {per_seed})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="sampler seeds (default 0-4)"
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="trial budget of each study (default: the sweep's)"
    )
    parser.add_argument("--subset", type=int, default=10000, help="training images per trial (default 10000)")
    parser.add_argument(
        "--sweep-arg",
        action="append",
        default=None,
        help=f"an override for every study (repeatable; default: {' '.join(DEFAULT_SWEEP_ARGS)})",
    )
    parser.add_argument("--variant", action="append", default=[], help="'LABEL|OVERRIDE|...', another arm")
    parser.add_argument("--no-default", action="store_true", help="skip the sweep's own pruner")
    parser.add_argument(
        "--no-unpruned", action="store_true", help="skip the unpruned study (compare with --results)"
    )
    parser.add_argument("--results", type=Path, default=None, help="append one JSON line per study to this file")
    args = parser.parse_args()
    if (args.trials is not None and args.trials < 1) or args.subset < 1:
        raise ValueError("--trials and --subset must be positive")
    extra = list(DEFAULT_SWEEP_ARGS) if args.sweep_arg is None else args.sweep_arg
    arms = {} if args.no_unpruned else {UNPRUNED: ARM_OVERRIDES[UNPRUNED]}
    if not args.no_default:
        arms[DEFAULT] = ARM_OVERRIDES[DEFAULT]
    arms.update(parse_variant(text) for text in args.variant)

    results = [] if args.results is None else read_results(args.results)
    for seed in args.seeds:
        for arm, overrides in arms.items():
            result = run_study(
                arm, [f"hydra.sweeper.sampler.seed={seed}", *extra, *overrides], args.trials, args.subset
            )
            row = {"seed": seed, "arm": arm, "overrides": overrides, "subset": args.subset, **result}
            print(json.dumps(row), flush=True)
            results.append(row)
            if args.results is not None:
                with args.results.open("a") as log:
                    log.write(json.dumps(row) + "\n")

    print(f"\n{args.subset} training images, overrides for every study: {' '.join(extra) or '(none)'}")
    ran = [row for row in results if row["seed"] in args.seeds]
    print_table(
        [
            "seed",
            "pruner",
            "trials",
            "complete",
            "pruned",
            "failed",
            "epochs trained",
            "wall s",
            "best val_acc (trial)",
        ],
        [
            [
                str(row["seed"]),
                row["arm"],
                *(str(row[key]) for key in ("trials", "complete", "pruned", "failed", "epochs")),
                f"{row['wall']:.0f}",
                f"{row['best']:.4f} (#{row['best_trial']})",
            ]
            for row in sorted(ran, key=lambda row: (row["seed"], row["arm"] != UNPRUNED))
        ],
    )
    summarize(ran, args.seeds)


if __name__ == "__main__":
    main()
