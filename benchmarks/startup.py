"""What a process of the study spends importing its libraries, with and without compiled bytecode (.pyc files).

Every process the project starts (a sweep, a report's refit worker, the rerun check, `mlflow ui`, each test
subprocess) imports TensorFlow, Keras, MLflow, Optuna and Hydra first. Where `PYTHONDONTWRITEBYTECODE` is set (on
CI machines and in many containers), Python never writes the .pyc files it compiles, so a virtual environment
installed without them compiles the same ~5 000 modules from source in every process. `make install` has uv write
them once (`uv sync --compile-bytecode`). This benchmark times a fresh interpreter importing what a trial process
imports, alternately with the environment's .pyc files (`compiled`) and with Python pointed at an empty bytecode
folder (`source`: `PYTHONPYCACHEPREFIX`, with `PYTHONDONTWRITEBYTECODE=1` so that every repetition compiles again).

Run: .venv/bin/python benchmarks/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measured import commit

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


def compiled_packages() -> bool:
    """Whether the environment's TensorFlow has its .pyc files (made by `make install`)."""
    spec = importlib.util.find_spec("tensorflow")
    return spec is not None and any(Path(spec.origin).parent.glob("__pycache__/*.pyc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not compiled_packages():
        sys.exit("startup.py: TensorFlow has no .pyc files here; fix: rm .venv/.installed && make install")
    base = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    times: dict[str, list[float]] = {"compiled": [], "source": []}
    with tempfile.TemporaryDirectory(prefix="no-bytecode-") as empty:
        source = {**base, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        seconds_to_import(base)  # The first start reads the files into the page cache for both arms.
        for _ in range(args.repeats):
            times["compiled"].append(seconds_to_import(base))
            times["source"].append(seconds_to_import(source))
    compiled, source_median = statistics.median(times["compiled"]), statistics.median(times["source"])
    print(
        f"commit {commit()}, {args.repeats} alternating repetitions: wall seconds of a fresh interpreter's imports"
    )
    print("| bytecode | median s | each |")
    print("|---|---|---|")
    for arm, values in times.items():
        print(f"| {arm} | {statistics.median(values):.1f} | {', '.join(f'{value:.1f}' for value in values)} |")
    print(f"startup_ratio={compiled / source_median:.2f} saved_s={source_median - compiled:.1f}")


if __name__ == "__main__":
    main()
