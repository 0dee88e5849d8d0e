"""Who finds the better network in the same minutes: the project's default study or KerasTuner?

    .venv/bin/python benchmarks/vs_kerastuner.py [--budget-min 7] [--seeds 0 1 2] [--arms ours ours_unpruned ...]

The same problem for every arm: `make_split()`'s 55 000 / 5 000 train/validation split, the network family of
`build_model` (Dense units relu, optional Dropout, Dense 10 softmax), the optimizer group's classes, and the space
of `experiments/sweep.yaml` (read from that file, so a change there reaches this benchmark). The objective is the
validation accuracy of a trial's last epoch. Arms, each run once per seed for the same wall-clock budget, in
alternation (arm a, b, c, d for seed 0, then for seed 1, ...) so that the machine's drift hits every arm alike:

- `ours`: `python src/run.py sweep` as `make sweep` runs it (its pruner and sampler), in fresh stores;
- `ours_unpruned`: the same with `hydra.sweeper.pruner=null`;
- `hyperband`, `bayes`, `random`: KerasTuner's Hyperband (its epoch budget replaces the epochs parameter, max 30),
  BayesianOptimization and RandomSearch, with batch size and epochs tuned through `HyperModel.fit`.

Each arm runs in its own process (so its start-up counts, as a user pays it) and is stopped at the budget. Every
finished trial is recorded with its wall time since the arm's start, its last-epoch validation accuracy and its
test accuracy; the test accuracy is only reported for each arm's final pick, never used to choose. KerasTuner ranks
a trial by its best epoch (its own rule); the curves here use the last epoch for every arm.

Prints per-arm medians (ranges) over seeds: time to reach each `--target` (default 0.984 and 0.986, read from
the same trials), best at the end, trials, epochs, the pick's test accuracy; writes the anytime curves to
`--figure` and every arm's summaries to `--results` (JSON lines); one `time_to_target_ratio@T=` line per target
(ours / the best KerasTuner arm), and last `time_to_target_ratio=X best_delta=Y` (X at the first target, Y in
points).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from omegaconf import OmegaConf  # noqa: E402
from optuna.distributions import (  # noqa: E402
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mnist_study.sweep.space import Branch, SearchSpace, format_value, parse_space, same_value  # noqa: E402

SPACE_FILE = ROOT / "experiments" / "sweep.yaml"
KERAS_TUNER_ARMS = ("hyperband", "bayes", "random")
ARMS = ("ours", "ours_unpruned", *KERAS_TUNER_ARMS)
MAX_EPOCHS = 30


def sweep_space(path: Path = SPACE_FILE) -> SearchSpace:
    """The default study's search space (flat parameters and conditional branches), from the file itself."""
    sweeper = OmegaConf.load(path).hydra.sweeper
    params = OmegaConf.to_container(sweeper.params)
    conditional = OmegaConf.to_container(sweeper.get("conditional") or {})
    return parse_space({str(k): str(v) for k, v in params.items()}, [], conditional)


def define_one(hp: Any, name: str, distribution: BaseDistribution) -> Any:
    """One Optuna distribution as a KerasTuner hyperparameter (log scales and steps kept)."""
    if isinstance(distribution, CategoricalDistribution):
        if all(isinstance(choice, bool) for choice in distribution.choices):
            return hp.Boolean(name)  # KerasTuner's Choice hands booleans back as 0 and 1.
        return hp.Choice(name, list(distribution.choices))
    sampling = "log" if distribution.log else "linear"
    if isinstance(distribution, IntDistribution):
        step = None if distribution.log else distribution.step
        return hp.Int(name, distribution.low, distribution.high, step=step, sampling=sampling)
    if isinstance(distribution, FloatDistribution):
        return hp.Float(name, distribution.low, distribution.high, step=distribution.step, sampling=sampling)
    raise TypeError(f"{name}: KerasTuner has no counterpart for {distribution!r}")


def branch_name(key: str, branch: Branch) -> str:
    """KerasTuner's name for a branch's own space of a flat parameter (one name, one range, in KerasTuner)."""
    return f"{key}|{branch.condition}"


def define(hp: Any, space: SearchSpace, skip: Sequence[str] = ()) -> dict[str, Any]:
    """Every parameter of the space as a KerasTuner hyperparameter; this trial's values, by override key.

    A branch becomes a `conditional_scope` on its parent's value, so an sgd trial has a momentum and an adam trial
    none, as in our study. KerasTuner gives a name one range, so a branch that replaces a flat parameter's space
    (sgd's learning rate) defines it under its own name (`branch_name`), and the flat one exists only under the
    parent's other values.
    """
    parents = {branch.parent for branch in space.branches}
    values = {key: define_one(hp, key, space.distributions[key]) for key in parents}
    for key, distribution in space.distributions.items():
        if key in parents or key in skip:
            continue
        replacing = [branch for branch in space.branches if key in branch.distributions]
        if not replacing:
            values[key] = define_one(hp, key, distribution)
            continue
        parent = replacing[0].parent
        taken = {format_value(branch.value) for branch in replacing}
        others = [c for c in space.distributions[parent].choices if format_value(c) not in taken]
        with hp.conditional_scope(parent, others):
            values[key] = define_one(hp, key, distribution)
    for branch in space.branches:
        with hp.conditional_scope(branch.parent, [branch.value]):
            for key, distribution in branch.distributions.items():
                name = branch_name(key, branch) if key in space.distributions else key
                chosen = define_one(hp, name, distribution)
                if same_value(values[branch.parent], branch.value):
                    values[key] = chosen
    return {key: value for key, value in values.items() if value is not None}


# ---------------------------------------------------------------------------------------------------------------
# One arm, in its own process: `--run-arm NAME --seed S --log FILE`.


def run_keras_tuner_arm(arm: str, seed: int, log: Path, folder: Path) -> None:
    """Search with KerasTuner until the parent stops this process; one JSON line per finished trial."""
    import keras
    import keras_tuner
    from hydra.utils import instantiate

    from mnist_study.data import make_split
    from mnist_study.model import build_model

    keras.utils.set_random_seed(seed)
    split = make_split(val_size=5000, cache=str(ROOT / "data" / "mnist.npz"))
    space = sweep_space()
    started = float(os.environ["ARM_STARTED"])
    optimizers = {
        name: OmegaConf.load(ROOT / "conf" / "optimizer" / f"{name}.yaml")
        for name in space.distributions["optimizer"].choices
    }

    class Study(keras_tuner.HyperModel):
        def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
            values = define(hp, space, skip=("train.epochs",) if arm == "hyperband" else ())
            model = build_model(values["model.units"], dropout=values.get("model.dropout", 0.0))
            settings = {
                k: v for k, v in OmegaConf.to_container(optimizers[values["optimizer"]]).items() if k != "name"
            }
            # Every sampled `optimizer.<argument>` (learning rate, sgd's momentum, adamw's weight decay).
            settings.update({k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("optimizer.")})
            model.compile(
                optimizer=instantiate(settings), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
            )
            return model

        def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
            batch_size = hp.get("train.batch_size")
            if arm != "hyperband":
                kwargs["epochs"] = hp.get("train.epochs")
            history = model.fit(*args, batch_size=batch_size, verbose=0, **kwargs)
            last = float(history.history["val_accuracy"][-1])
            test = float(model.evaluate(split.x_test, split.y_test, batch_size=1024, verbose=0)[1])
            record(log, started, last, test, len(history.history["val_accuracy"]), hp.values)
            return history

    common = {
        "objective": "val_accuracy",
        "seed": seed,
        "directory": str(folder),
        "project_name": arm,
        "overwrite": True,
    }
    if arm == "hyperband":
        tuner = keras_tuner.Hyperband(Study(), max_epochs=MAX_EPOCHS, factor=3, **common)
    elif arm == "bayes":
        tuner = keras_tuner.BayesianOptimization(Study(), max_trials=10_000, **common)
    else:
        tuner = keras_tuner.RandomSearch(Study(), max_trials=10_000, **common)
    tuner.search(split.x_fit, split.y_fit, validation_data=(split.x_val, split.y_val))


def record(log: Path, started: float, val: float, test: float, epochs: int, params: Mapping[str, Any]) -> None:
    line = {"seconds": time.time() - started, "val": val, "test": test, "epochs": epochs, "params": dict(params)}
    with log.open("a") as output:
        output.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# The parent: runs every arm for every seed, stops each at the budget, reads what it recorded.


def launch(arm: str, seed: int, folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """The arm's process, started now (its start-up is part of its budget)."""
    env = {**os.environ, "ARM_STARTED": str(time.time())}
    if arm.startswith("ours"):
        command = [
            sys.executable, str(ROOT / "src" / "run.py"), "sweep", "hydra.sweeper.n_trials=100000",
            f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.storage=sqlite:///{folder}/optuna.db",
            f"tracking.uri=sqlite:///{folder}/mlflow.db", f"tracking.artifact_location={folder}/mlruns",
            f"hydra.sweep.dir={folder}/multirun", "tracking.log_model=false", "tracking.plots=false",
        ]  # fmt: skip
        if arm == "ours_unpruned":
            command.append("hydra.sweeper.pruner=null")
    else:
        command = [
            sys.executable,
            __file__,
            "--run-arm",
            arm,
            "--seed",
            str(seed),
            "--log",
            str(log),
            "--folder",
            str(folder),
        ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "stderr.log").open("w"),
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the arm's process group (our sweeper hands its trial back), SIGKILL if it lingers."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def our_trials(folder: Path, started: float) -> list[dict[str, Any]]:
    """The study's finished trials as the KerasTuner arms record theirs (pruned trials count, with no value)."""
    import optuna
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{folder}/optuna.db")
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    rows = []
    for trial in study.trials:
        if trial.datetime_complete is None or trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        complete = trial.state.name == "COMPLETE"
        rows.append({
            "seconds": trial.datetime_complete.timestamp() - started,
            "val": trial.value if complete else None,
            "test": run.data.metrics.get("test_accuracy") if complete else None,
            "epochs": int(run.data.metrics.get("epochs_run", max(trial.intermediate_values or {0: 0}))),
            "params": trial.params,
        })  # fmt: skip
    return sorted(rows, key=lambda row: row["seconds"])


def summarize(rows: list[dict[str, Any]], budget_s: float, targets: Sequence[float]) -> dict[str, Any]:
    """Best validation over time, when it first reached each target, and the final pick's test accuracy."""
    done = [row for row in rows if row["seconds"] <= budget_s]
    scored = [row for row in done if row["val"] is not None]
    best = max(scored, key=lambda row: row["val"], default=None)
    reached = {
        str(target): next((row["seconds"] for row in scored if row["val"] >= target), None) for target in targets
    }
    curve, running = [], 0.0
    for row in scored:
        running = max(running, row["val"])
        curve.append((row["seconds"], running))
    return {
        "trials": len(done),
        "epochs": sum(row["epochs"] for row in done),
        "best": best["val"] if best else float("nan"),
        "test": best["test"] if best else float("nan"),
        "to_target": reached,  # seconds, by target (None: never within the budget)
        "curve": curve,
    }


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=7.0, help="wall minutes per arm and seed (default 7)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    # `ours_unpruned` is not a default arm: MedianPruner(10, 5) spares the first 10 trials, and in 7 minutes its
    # trials were the same as `ours`'s on every seed measured.
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["ours", "hyperband", "bayes"])
    parser.add_argument("--target", type=float, nargs="+", default=[0.984, 0.986])
    parser.add_argument("--results", type=Path, help="append each arm's summary per seed here (JSON lines)")
    parser.add_argument("--figure", type=Path, default=Path(tempfile.gettempdir()) / "vs_kerastuner.png")
    parser.add_argument("--run-arm", choices=KERAS_TUNER_ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_arm:
        run_keras_tuner_arm(args.run_arm, args.seed, args.log, args.folder)
        return
    budget_s = 60 * args.budget_min
    print(versions())
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            with tempfile.TemporaryDirectory(prefix=f"vs_kt_{arm}_{seed}_") as name:
                folder, log = Path(name), Path(name) / "trials.jsonl"
                started = time.time()
                process = launch(arm, seed, folder, log)
                try:
                    process.wait(timeout=budget_s)
                except subprocess.TimeoutExpired:
                    stop(process)
                rows = our_trials(folder, started) if arm.startswith("ours") else read_rows(log)
            results[arm].append(summarize(rows, budget_s, args.target))
            if args.results:
                with args.results.open("a") as output:
                    output.write(json.dumps({"arm": arm, "seed": seed, **results[arm][-1]}) + "\n")
            print(
                f"seed {seed} {arm}: {json.dumps({k: v for k, v in results[arm][-1].items() if k != 'curve'})}",
                flush=True,
            )
    report(results, args, budget_s)


def versions() -> str:
    """What every arm ran on."""
    from importlib.metadata import version

    packages = ("tensorflow", "keras", "keras-tuner", "optuna", "hydra-core", "mlflow")
    return "versions: " + ", ".join(f"{name} {version(name)}" for name in packages)


def read_rows(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def report(results: Mapping[str, list[dict[str, Any]]], args: argparse.Namespace, budget_s: float) -> None:
    """The table, the figure, and the last line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
        real = [v * scale for v in values if v is not None and v == v]
        if not real:
            return "never"
        return f"{median(real):.{digits}f} ({min(real):.{digits}f}-{max(real):.{digits}f})" + (
            f" [{len(real)}/{len(values)}]" if len(real) < len(values) else ""
        )

    targets = [str(target) for target in args.target]
    print(f"\nbudget {args.budget_min:g} min per arm and seed; seeds {args.seeds}")
    print(
        "| arm | "
        + " | ".join(f"minutes to val {target}" for target in targets)
        + " | best val_accuracy | trials | epochs | pick's test accuracy |"
    )
    print("|---" * (len(targets) + 5) + "|")
    for arm, runs in results.items():
        times = [spread([minutes(run, target) for run in runs], digits=1) for target in targets]
        print(
            f"| {arm} | {' | '.join(times)} | {spread([r['best'] for r in runs], digits=4)} | "
            f"{spread([r['trials'] for r in runs], digits=0)} | {spread([r['epochs'] for r in runs], digits=0)} | "
            f"{spread([r['test'] for r in runs], 100)} % |"
        )
    figure, axes = plt.subplots(figsize=(7, 4))
    for index, (arm, runs) in enumerate(results.items()):
        for number, run in enumerate(runs):
            if run["curve"]:
                times, bests = zip(*run["curve"], strict=True)
                axes.step(
                    [t / 60 for t in times],
                    bests,
                    where="post",
                    color=f"C{index}",
                    alpha=0.8,
                    label=arm if number == 0 else None,
                )
    for target in args.target:
        axes.axhline(target, color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="wall minutes", ylabel="best val_accuracy so far", xlim=(0, budget_s / 60), ylim=(0.97, 0.99))
    axes.legend()
    figure.savefig(args.figure, dpi=120, bbox_inches="tight")
    print(f"figure: {args.figure}")
    ours = results.get("ours", [])
    tuners = [arm for arm in results if arm in KERAS_TUNER_ARMS]
    if not (ours and tuners):
        return
    ratios = {target: target_ratio(ours, [results[arm] for arm in tuners], target) for target in targets}
    for target, ratio in ratios.items():
        print(f"time_to_target_ratio@{target}={ratio:.2f}")
    best_tuner_final = max(median([r["best"] for r in results[arm]]) for arm in tuners)
    best_delta = 100 * (median([r["best"] for r in ours]) - best_tuner_final)
    print(f"time_to_target_ratio={ratios[targets[0]]:.2f} best_delta={best_delta:+.2f}")


def minutes(run: Mapping[str, Any], target: str) -> float | None:
    """Wall minutes to the target in one arm's run; None if it never got there."""
    seconds = run["to_target"][target]
    return None if seconds is None else seconds / 60


def target_ratio(ours: list[dict[str, Any]], tuners: list[list[dict[str, Any]]], target: str) -> float:
    """Our median time to the target over the best KerasTuner arm's (a run that never got there counts as
    infinitely slow, so the median stays defined while more than half the seeds reach it)."""

    def median_minutes(runs: list[dict[str, Any]]) -> float:
        values = [minutes(run, target) for run in runs]
        return median([value if value is not None else float("inf") for value in values])

    best_tuner = min(median_minutes(runs) for runs in tuners)
    if best_tuner in (0, float("inf")):
        return float("nan")
    return median_minutes(ours) / best_tuner


if __name__ == "__main__":
    main()
