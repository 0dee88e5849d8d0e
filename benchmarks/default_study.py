"""The whole user path, per sampler seed: `make sweep`, then `python src/report.py`, in fresh stores.

    .venv/bin/python benchmarks/default_study.py [--experiment sweep|frontier] [--seeds 0 1 2] [--results FILE]
        [--keep DIR] [--arg OVERRIDE ...] [--report-arg OVERRIDE ...]

For each seed the default study (`python src/run.py sweep`, with `hydra.sweeper.sampler.seed=<seed>`) runs in a
throwaway folder's stores, then the report with its defaults (5 seeds, top 3 trials) on that study. Both run as
the user runs them, in their own processes. Per seed it prints the wall time of each step, the study's pick (its
best trial by validation accuracy), the champion the report promotes (see `report/registry.py`), its test mean
over the seeds the report refitted it with (5, or 3 when its verdict settled at the interim look) and its gain over
the baseline in points. Last line: `min_gain=X seeds=N median_minutes=M min_accuracy=A`:
the smallest gain over the seeds, how many seeds, the median over seeds of sweep + report wall minutes, and the
lowest champion's mean test accuracy in %.

`--experiment frontier` runs the frontier study instead (`python src/run.py frontier`, study `frontier`), and its
report as experiments/frontier.yaml says (its own MLflow experiment, bfloat16 like its trials) with the default
study's committed champion as a second reference (`reference=mnist-mlp_champion`): each row then also holds the
reference's mean test accuracy and the verdict of the frontier champion against it, and a line before the last
counts the seeds whose champion beats it. `--report-arg` adds or replaces (per key) an override of the report.

A seed's row (with the experiment, the date and commit measured) is also appended to `--results` (JSON lines) as
soon as it is measured, so that a run stopped midway keeps what it measured, and a later run (`--seeds 2`) adds to
the same file: the table and the last line cover every row in the file of the same experiment (a row without one
is the default study's). The README's results come from
benchmarks/results/default_study.jsonl through `scripts/results_page.py`. With `--keep DIR`, the stores of each
seed stay in `DIR/seed_<seed>` (for `mlflow ui`, or to run the report again on the same study) instead of a
throwaway folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from measured import commit
from report_runs import STUDY, report_command, report_results, store_uris, tracking_overrides

from mnist_study.paths import default_experiment
from mnist_study.report.refit import merge_overrides

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass(frozen=True)
class Study:
    """A named study this benchmark runs: its Optuna study's name and what its report is given besides the
    stores."""

    name: str
    report_args: tuple[str, ...] = ()


# By experiment file. The frontier study logs to its own MLflow experiment and trains in bfloat16
# (experiments/frontier.yaml), so its report does too; its question is whether its champion beats the default
# study's, the committed experiments/mnist-mlp_champion.yaml.
STUDIES = {
    "sweep": Study(STUDY),
    "frontier": Study(
        "frontier",
        (
            "study_name=frontier",
            "tracking.experiment=frontier",
            "train.precision=bfloat16",
            "reference=mnist-mlp_champion",
        ),
    ),
}


def run(command: list[str], log: Path) -> float:
    """Run one step of the user path, its output to `log`; return its wall seconds; stop on failure."""
    started = time.perf_counter()
    with log.open("w") as output:
        completed = subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        sys.exit(f"error: {' '.join(command[1:3])} exited {completed.returncode}; its output: {log}")
    return time.perf_counter() - started


def measure(experiment: str, seed: int, extra: list[str], report_extra: list[str], folder: Path) -> dict:
    """Sweep and report for one sampler seed in `folder`'s stores; what the report promoted."""
    study = STUDIES[experiment]
    stores = store_uris(folder)
    sweep = [
        PYTHON, "src/run.py", experiment, f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweeper.storage={stores['optuna']}", f"hydra.sweep.dir={folder}/multirun",
        *tracking_overrides(folder), *extra,
    ]  # fmt: skip
    report = report_command(PYTHON, folder, merge_overrides(study.report_args, report_extra))
    load_before = os.getloadavg()[0]
    sweep_seconds = run(sweep, folder / "sweep.log")
    report_seconds = run(report, folder / "report.log")
    measured = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": commit(),
        # The 1-minute load average before the sweep and after the report (the path's own work counts about 2 on
        # 2 cores): what a reader checks to tell a quiet measurement from a shared one.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    found = outcome(stores, study.name, model_name(study, report_extra))
    # What was measured besides the committed defaults, so that a row with extra overrides is never taken for one.
    arguments = {"arguments": extra, "report_arguments": report_extra} if extra or report_extra else {}
    return {"experiment": experiment, "seed": seed, "sweep_s": sweep_seconds, "report_s": report_seconds,
            **found, **measured, **arguments}  # fmt: skip


def model_name(study: Study, report_extra: list[str]) -> str:
    """The registered model the report promotes to: named after its `tracking.experiment` (conf/tracking's unless
    the report is given one)."""
    for override in merge_overrides(study.report_args, report_extra):
        if override.startswith("tracking.experiment="):
            return override.split("=", 1)[1]
    return default_experiment()


def outcome(stores: dict[str, str], study_name: str, model: str) -> dict:
    """The study's pick, and the champion's label, test mean and gain (and against the second reference, when the
    report had one), read back from the stores."""
    import optuna
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # One small file: no progress bar.

    study = optuna.load_study(study_name=study_name, storage=stores["optuna"])
    client = MlflowClient(stores["mlflow"])
    champion = client.get_model_version_by_alias(model, "champion")
    results = report_results(client, champion.tags["report_run_id"])
    label = next(
        label for label, row in results.items() if " ".join(row["overrides"]) == champion.tags["overrides"]
    )
    baseline = next(row for label_, row in results.items() if label_.startswith("baseline"))
    row = results[label]
    states = [trial.state.name for trial in study.trials]
    found = {
        "trials": {state: states.count(state) for state in sorted(set(states))},
        "pick": f"trial {study.best_trial.number} (val {study.best_value:.4f})",
        "refits": {label_: [round(100 * row_["mean"], 2), row_["verdict"]] for label_, row_ in results.items()},
        "champion": label,
        "champion_mean": row["mean"],
        "champion_refits": len(row["test_accuracy"]),
        "baseline_mean": baseline["mean"],
        "gain_points": 100 * (row["mean"] - baseline["mean"]),
        "verdict": row["verdict"],
    }
    second = next((label_ for label_, row_ in results.items() if row_.get("role") == "reference"), None)
    if second is not None:
        # A champion that is the baseline has no verdict against the reference (it is not in the family).
        found.update(
            reference=second,
            reference_mean=results[second]["mean"],
            vs_reference_points=100 * (row["mean"] - results[second]["mean"]),
            verdict_vs_reference=row.get("verdict_vs_reference"),
        )
    return found


def print_rows(rows: list[dict]) -> None:
    headers = ("seed", "make sweep", "report", "study's pick", "champion", "champion test", "gain (points)")
    lines = [
        (
            str(row["seed"]),
            f"{row['sweep_s'] / 60:.1f} min",
            f"{row['report_s'] / 60:.1f} min",
            row["pick"],
            row["champion"],
            f"{100 * row['champion_mean']:.2f} %",
            f"{row['gain_points']:+.2f}",
        )
        for row in rows
    ]
    if any("reference" in row for row in rows):
        headers += ("reference test", "vs reference (points)", "verdict vs reference")
        lines = [
            (
                *line,
                f"{100 * row['reference_mean']:.2f} %" if "reference" in row else "—",
                f"{row['vs_reference_points']:+.2f}" if "reference" in row else "—",
                row.get("verdict_vs_reference") or "not tested (the champion is the baseline)",
            )
            for line, row in zip(lines, rows, strict=True)
        ]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *lines, strict=True)]
    for index, line in enumerate([headers, *lines]):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


@contextlib.contextmanager
def seed_folder(seed: int, keep: Path | None) -> Iterator[Path]:
    """A fresh folder for one seed's stores: kept under `keep`, else deleted afterwards."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"default_study_{seed}_") as folder:
            yield Path(folder)
        return
    folder = keep.resolve() / f"seed_{seed}"
    if folder.exists():
        sys.exit(f"error: {folder} exists; a study starts from fresh stores: remove it or choose another --keep")
    folder.mkdir(parents=True)
    yield folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", choices=sorted(STUDIES), default="sweep", help="the study (default sweep)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds (default 0 1 2)")
    parser.add_argument("--results", type=Path, help="JSON lines (default: <tmp>/<default|frontier>_study.jsonl)")
    parser.add_argument("--arg", action="append", default=[], help="an override for every sweep (repeatable)")
    parser.add_argument(
        "--report-arg", action="append", default=[], help="an override for every report (repeatable; wins per key)"
    )
    parser.add_argument("--keep", type=Path, help="keep each seed's stores in DIR/seed_<seed> (must not exist)")
    args = parser.parse_args()
    stem = "default" if args.experiment == "sweep" else args.experiment
    results_path = args.results or Path(tempfile.gettempdir()) / f"{stem}_study.jsonl"
    for seed in args.seeds:
        with seed_folder(seed, args.keep) as folder:
            row = measure(args.experiment, seed, args.arg, args.report_arg, folder)
        with results_path.open("a") as results:
            results.write(json.dumps(row) + "\n")
        print(f"seed {seed}: {json.dumps(row)}", flush=True)
    every_row = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    rows = [row for row in every_row if row.get("experiment", "sweep") == args.experiment]
    print_rows(rows)
    compared = [row for row in rows if "reference" in row]
    if compared:
        wins = sum((row.get("verdict_vs_reference") or "").startswith("better") for row in compared)
        print(f"champion better than {compared[0]['reference']} at 95 %: {wins} of {len(compared)} seeds")
    print(last_line(rows))


def last_line(rows: list[dict]) -> str:
    """`min_gain=X seeds=N median_minutes=M min_accuracy=A` over every measured seed."""
    minutes = statistics.median((row["sweep_s"] + row["report_s"]) / 60 for row in rows)
    return (
        f"min_gain={min(row['gain_points'] for row in rows):.2f} seeds={len(rows)} "
        f"median_minutes={minutes:.1f} min_accuracy={min(100 * row['champion_mean'] for row in rows):.2f}"
    )


if __name__ == "__main__":
    main()
