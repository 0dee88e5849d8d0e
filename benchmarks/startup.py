"""What a process of the study spends importing its libraries, with and without compiled bytecode (.pyc files).

Every process the project starts (a sweep, a report's refit worker, the rerun check, `mlflow ui`, each test
subprocess) imports TensorFlow, Keras, MLflow, Optuna and Hydra first. Where `PYTHONDONTWRITEBYTECODE` is set (on
CI machines and in many containers), Python never writes the .pyc files it compiles, so a virtual environment
installed without them compiles the same ~5 000 modules from source in every process. `make install` has uv write
them once (`uv sync --compile-bytecode`). This benchmark times a fresh interpreter importing what a trial process
imports, alternately with the environment's .pyc files (`compiled`) and with Python pointed at an empty bytecode
folder (`source`: `PYTHONPYCACHEPREFIX`, with `PYTHONDONTWRITEBYTECODE=1` so that every repetition compiles again).

With `--report DIR` (a study kept by `default_study.py --keep`, e.g. DIR/seed_1) it times what the user waits for
instead: `python src/report.py` on a fresh copy of that study per repetition, alternately both ways. The report
starts several processes (itself, its refit workers, the rerun check), each of which pays the imports.

Run: .venv/bin/python benchmarks/startup.py [--repeats 3] [--report DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measured import commit
from report_runs import report_command

ROOT = Path(__file__).resolve().parents[1]
# What one trial's process imports before it trains: the libraries through the project's own modules.
IMPORTS = (
    "import mnist_study.tracked_training, mnist_study.sweep.sweeper, tensorflow, keras, mlflow, optuna, hydra"
)


def seconds_to_import(environment: dict[str, str]) -> float:
    """Wall seconds of a fresh interpreter that imports `IMPORTS` and exits."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], env=environment, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def seconds_to_report(kept: Path, copy: Path, environment: dict[str, str]) -> float:
    """Wall seconds of the report with its defaults on `copy`, a fresh copy of the study kept in `kept`."""
    shutil.copytree(kept, copy, ignore=shutil.ignore_patterns("report", "outputs", "*.log", "*.lock"))
    # The copy's new runs keep their artifacts in the copy, not in the kept study's folder.
    with contextlib.closing(sqlite3.connect(copy / "mlflow.db")) as connection, connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (str(kept), str(copy))
        )
    started = time.perf_counter()
    with (copy / "report.log").open("w") as log:
        command = report_command(sys.executable, copy, [])
        completed = subprocess.run(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        sys.exit(f"startup.py: the report exited {completed.returncode}; its output: {copy / 'report.log'}")
    return time.perf_counter() - started


def compiled_packages() -> bool:
    """Whether the environment's TensorFlow has its .pyc files (made by `make install`)."""
    spec = importlib.util.find_spec("tensorflow")
    return spec is not None and any(Path(spec.origin).parent.glob("__pycache__/*.pyc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", type=Path, help="time the report on copies of this kept study instead")
    args = parser.parse_args()
    if not compiled_packages():
        sys.exit("startup.py: TensorFlow has no .pyc files here; fix: rm .venv/.installed && make install")
    base = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    times: dict[str, list[float]] = {"compiled": [], "source": []}
    with tempfile.TemporaryDirectory(prefix="no-bytecode-") as empty, tempfile.TemporaryDirectory() as scratch:
        source = {**base, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        seconds_to_import(base)  # The first start reads the files into the page cache for both arms.
        for repetition in range(args.repeats):
            for arm, environment in (("compiled", base), ("source", source)):
                if args.report is None:
                    times[arm].append(seconds_to_import(environment))
                else:
                    copy = Path(scratch) / f"{arm}-{repetition}"
                    times[arm].append(seconds_to_report(args.report.resolve(), copy, environment))
                    print(f"report ({arm} bytecode): {times[arm][-1]:.0f} s", flush=True)
    compiled, source_median = statistics.median(times["compiled"]), statistics.median(times["source"])
    measured = "a fresh interpreter's imports" if args.report is None else f"the report on a copy of {args.report}"
    print(f"commit {commit()}, {args.repeats} alternating repetitions: wall seconds of {measured}")
    print("| bytecode | median s | each |")
    print("|---|---|---|")
    for arm, values in times.items():
        print(f"| {arm} | {statistics.median(values):.1f} | {', '.join(f'{value:.1f}' for value in values)} |")
    print(f"startup_ratio={compiled / source_median:.2f} saved_s={source_median - compiled:.1f}")


if __name__ == "__main__":
    main()
