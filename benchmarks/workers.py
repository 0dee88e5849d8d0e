"""Wall time of one fixed study run by 1, 2 and 3 local workers at once, on PostgreSQL and an mlflow server.

    .venv/bin/python benchmarks/workers.py                 # 8 trials; 1, 2 and 3 workers
    .venv/bin/python benchmarks/workers.py --trials 6 --workers 1 2

It starts its own throwaway services (scripts/services.sh, free ports, a folder under /tmp, stopped at the end),
then for each worker count runs `python src/run.py smoke ...` that many times at once on a new study whose every
trial is the same configuration (no sampled parameter, no pruning), so only the number of workers changes. Each
row reports the wall time from launch to the last worker's exit, its ratio to one worker, the median time of one
trial inside its worker, the start-up before the first trial began (interpreter and MLflow imports, study) and
the rest of the wall time, when trials ran. The load average is printed before and after: on a shared machine,
other people's processes take CPU too, and more workers win a larger share of it (which is not scaling).
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import optuna  # noqa: E402

from mnist_study.browser import free_port  # noqa: E402
from mnist_study.sweep.storage import open_storage  # noqa: E402
from mnist_study.sweep.trials import is_counted  # noqa: E402

SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"
# Every trial trains the tutorial's network (512 units, rmsprop) on all 55 000 training images for 2 epochs: long
# enough for training, not start-up, to dominate, and identical across trials so the rows compare like with like.
FIXED = [
    "data.train_subset=null",
    "model.units=512",
    "optimizer=rmsprop",
    "optimizer.learning_rate=0.001",
    "train.epochs=2",
    "hydra.sweeper.pruner=null",
]


@dataclass(frozen=True)
class Row:
    workers: int
    wall_s: float
    trial_s: float
    startup_s: float
    counted: int


def start_services(folder: Path) -> tuple[dict[str, str], str, str]:
    """Start PostgreSQL and mlflow server; return the env addressing them, the storage URL, the tracking URI."""
    env = {
        **os.environ,
        "SERVICES_DIR": str(folder),
        "PGPORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "PYTHON": sys.executable,
    }
    started = subprocess.run([str(SERVICES_SCRIPT), "start"], env=env, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise RuntimeError(f"services did not start:\n{started.stdout}\n{started.stderr}")
    urls = dict(
        line.split(":", 1) for line in started.stdout.splitlines() if line.startswith(("optuna", "mlflow"))
    )
    return env, urls["optuna storage"].strip(), urls["mlflow tracking uri"].strip()


def run_study(workers: int, trials: int, storage: str, tracking: str, folder: Path) -> Row:
    """Run one study with `workers` processes at once and measure it."""
    name = f"workers-{workers}"
    common = [
        "smoke",
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri={tracking}",
        "tracking.experiment=benchmark-workers",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.n_trials={trials}",
        *FIXED,
    ]
    launched = dt.datetime.now()
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "src" / "run.py"), *common, f"hydra.sweep.dir={folder}/{name}-{index}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(workers)
    ]
    outputs = [process.communicate()[0] for process in processes]
    wall = time.perf_counter() - started
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"a worker of {name} exited {process.returncode}:\n{output}")
    done = [
        t for t in optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials() if is_counted(t)
    ]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    first = min(t.datetime_start for t in done)
    return Row(workers, wall, statistics.median(durations), (first - launched).total_seconds(), len(done))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8, help="trials per study (default 8)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3], help="worker counts (default 1 2 3)")
    args = parser.parse_args()
    if args.trials < 1 or any(count < 1 for count in args.workers):
        raise ValueError("--trials and every --workers count must be at least 1")

    folder = Path(tempfile.mkdtemp(prefix="mnist-bench-workers-"))
    env: dict[str, str] = {**os.environ, "SERVICES_DIR": str(folder)}
    try:
        env, storage, tracking = start_services(folder)
        print(f"{os.cpu_count()} CPUs; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"{args.trials} identical trials per study ({' '.join(FIXED)}), PostgreSQL + mlflow server\n")
        rows = []
        for workers in args.workers:
            rows.append(run_study(workers, args.trials, storage, tracking, folder))
            print(f"  {workers} worker(s): {rows[-1].wall_s:.1f} s", flush=True)
        base = next((row.wall_s for row in rows if row.workers == 1), rows[0].wall_s)
        header = f"{'workers':>7}  {'wall s':>7}  {'speed-up':>8}  {'trial s (median)':>16}  {'start-up s':>10}"
        print(f"\n{header}  {'trials phase s':>14}  trials")
        for row in rows:
            print(
                f"{row.workers:>7}  {row.wall_s:>7.1f}  {base / row.wall_s:>7.2f}x  {row.trial_s:>16.1f}  "
                f"{row.startup_s:>10.1f}  {row.wall_s - row.startup_s:>14.1f}  {row.counted:>6}"
            )
        print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    finally:
        subprocess.run([str(SERVICES_SCRIPT), "stop"], env=env, capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
