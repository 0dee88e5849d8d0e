"""Wall time of one fixed study run by 1, 2 and 3 workers at once, on PostgreSQL and an mlflow server.

    .venv/bin/python benchmarks/workers.py                 # 8 trials; 1, 2 and 3 local worker processes
    .venv/bin/python benchmarks/workers.py --trials 6 --workers 1 2
    .venv/bin/python benchmarks/workers.py --launcher slurm   # the workers as a SLURM job array (as root)

With `--launcher slurm` it also brings up its own one-node SLURM cluster (scripts/slurm/cluster.sh) and submits
each worker count as one array of scripts/slurm/sweep-workers.sbatch (one CPU per task), timed from `sbatch` until
the array has left the queue.

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
import shlex
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
# The tests' server helpers (free_port) are the one place that finds a free port.
sys.path.insert(0, str(ROOT / "tests"))

import optuna  # noqa: E402

from mnist_study.sweep.schema import is_counted  # noqa: E402
from mnist_study.sweep.storage import open_storage  # noqa: E402
from servers import free_port  # noqa: E402

SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"
CLUSTER_SCRIPT = ROOT / "scripts" / "slurm" / "cluster.sh"
SBATCH_SCRIPT = ROOT / "scripts" / "slurm" / "sweep-workers.sbatch"
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


def start(script: Path, env: dict[str, str]) -> dict[str, str]:
    """`script start`, then the variables its `env` command exports (the services' URLs, SLURM_CONF)."""
    started = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise RuntimeError(f"{script.name} start failed:\n{started.stdout}\n{started.stderr}")
    exported = subprocess.run([str(script), "env"], env=env, capture_output=True, text=True, check=True).stdout
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in exported.splitlines())


def run_locally(workers: int, arguments: list[str], env: dict[str, str], folder: Path) -> None:
    """`workers` processes of `python src/run.py ARGUMENTS` at once, each with its own sweep folder."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "src" / "run.py"), *arguments, f"hydra.sweep.dir={folder}/{index}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(workers)
    ]
    outputs = [process.communicate()[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"a worker exited {process.returncode}:\n{output}")


def run_on_slurm(workers: int, arguments: list[str], env: dict[str, str], folder: Path) -> None:
    """One job array of `workers` tasks, each one worker; returns once the array has left the queue."""
    folder.mkdir(parents=True, exist_ok=True)
    submit = ["sbatch", "--parsable", f"--array=1-{workers}", "--cpus-per-task=1", "--mem=3G"]
    command = [*submit, f"--output={folder}/%a.out", str(SBATCH_SCRIPT), *arguments]
    job = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split(";")[
        0
    ]
    while subprocess.run(
        ["squeue", "-h", "-j", job.strip()], env=env, capture_output=True, text=True
    ).stdout.strip():
        time.sleep(0.5)


def run_study(workers: int, trials: int, launcher: str, env: dict[str, str], folder: Path) -> Row:
    """Run one study with `workers` workers at once and measure it."""
    name = f"workers-{launcher}-{workers}"
    arguments = [
        "smoke",
        "tracking.experiment=benchmark-workers",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.n_trials={trials}",
        *FIXED,
    ]
    launched = dt.datetime.now()
    started = time.perf_counter()
    run = run_on_slurm if launcher == "slurm" else run_locally
    run(workers, arguments, env, folder / name)
    wall = time.perf_counter() - started
    storage = env["OPTUNA_STORAGE"]
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
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local", help="how workers start")
    args = parser.parse_args()
    if args.trials < 1 or any(count < 1 for count in args.workers):
        raise ValueError("--trials and every --workers count must be at least 1")

    folder = Path(tempfile.mkdtemp(prefix="mnist-bench-workers-"))
    folder.chmod(0o755)  # As root, PostgreSQL runs as `postgres`, which must reach its folder inside this one.
    env: dict[str, str] = {
        **os.environ,
        "SERVICES_DIR": str(folder / "services"),
        "PGPORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "PYTHON": sys.executable,
        "SLURM_DIR": str(folder / "slurm"),
        "SLURMCTLD_PORT": str(free_port()),
        "SLURMD_PORT": str(free_port()),
    }
    try:
        env.update(start(SERVICES_SCRIPT, env))
        if args.launcher == "slurm":
            env.update(start(CLUSTER_SCRIPT, env))
        print(f"{os.cpu_count()} CPUs; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"{args.trials} identical trials per study ({' '.join(FIXED)}), PostgreSQL + mlflow server")
        how = "a SLURM job array, one CPU per task" if args.launcher == "slurm" else "local processes"
        print(f"workers: {how}\n")
        rows = []
        for workers in args.workers:
            rows.append(run_study(workers, args.trials, args.launcher, env, folder))
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
        if args.launcher == "slurm":
            subprocess.run([str(CLUSTER_SCRIPT), "stop"], env=env, capture_output=True, check=False)
        subprocess.run([str(SERVICES_SCRIPT), "stop"], env=env, capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
