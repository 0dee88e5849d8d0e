"""What a trial's heartbeat costs its training: the same fit with and without a heartbeat thread beside it.

    .venv/bin/python benchmarks/heartbeat.py [--reps 5] [--interval 1]

Each repetition trains the baseline (512 units, 5 epochs, all 55 000 training images) three times in this one
process, in turn: without a heartbeat, beside Optuna's RDB heartbeat (SQLite) and beside the journal file's
heartbeat (a trial attr). The heartbeat beats every `--interval` seconds, 30 times as often as the sweep's default
of 30 s, so that any cost shows. Prints the median fit seconds per arm and the median per-repetition ratio to the
arm without a heartbeat. Last line: `heartbeat_slowdown=X` (the larger of the two medians, minus 1).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)
import optuna
from common import compose_configs, median, print_table

from mnist_study.sweep.liveness import Heartbeat
from mnist_study.sweep.schema import trial_id
from mnist_study.sweep.storage import open_storage
from mnist_study.train import train


def beating(url: str, interval: int) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context that keeps a fresh trial of a fresh study in `url` beating while it is open."""
    storage = open_storage(url, (interval, 3 * interval))

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        study = optuna.create_study(storage=storage)
        trial = study.ask()
        with Heartbeat(storage, trial_id(storage, study.study_name, trial.number), interval):
            yield

    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--interval", type=int, default=1, help="seconds between beats (the sweep's default: 30)")
    args = parser.parse_args()
    config = compose_configs({"baseline": ["train.verbose=0"]})["baseline"]
    with tempfile.TemporaryDirectory() as folder:
        arms: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
            "no heartbeat": contextlib.nullcontext,
            "RDB heartbeat (SQLite)": beating(f"sqlite:///{folder}/optuna.db", args.interval),
            "journal heartbeat": beating(str(Path(folder) / "optuna.journal"), args.interval),
        }
        train(config)  # Warm-up: the first fit of a process builds TensorFlow's kernels.
        seconds: dict[str, list[float]] = {arm: [] for arm in arms}
        for _ in range(args.reps):
            for arm, context in arms.items():
                with context():
                    started = time.perf_counter()
                    train(config)
                    seconds[arm].append(time.perf_counter() - started)
    base = seconds["no heartbeat"]
    ratios = {arm: median([t / b for t, b in zip(times, base, strict=True)]) for arm, times in seconds.items()}
    rows = [
        [arm, f"{median(times):.2f}", f"{min(times):.2f}-{max(times):.2f}", f"{ratios[arm]:.3f}"]
        for arm, times in seconds.items()
    ]
    print_table(["arm", "median s", "range s", "ratio to no heartbeat"], rows)
    print(f"heartbeat_slowdown={max(ratios.values()) - 1:+.3f}")


if __name__ == "__main__":
    main()
