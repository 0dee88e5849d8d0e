"""Two fits at once with one thread each, against the same two fits one after the other with two threads each.

    .venv/bin/python benchmarks/two_workers.py [--reps 3] [--config champion] [--override KEY=VALUE ...]

The question of issue 27's lever 4: on a 2-core machine, do a study's trials (or a report's refits) finish sooner
as two single-threaded workers side by side than as one worker whose TensorFlow uses both cores?

Three long-lived worker processes are started once (TensorFlow imported, the data loaded and one short warm-up fit
run, as in a study's worker after its first trial): one with TensorFlow's default thread pools (two threads on two
cores) and two with `train.intra_op_threads=1 train.inter_op_threads=1`. Each repetition times both arms on the
same pair of seeds, alternating which arm goes first:

- sequential: the two-thread worker fits seed s, then seed s + 1 (the wall time of both);
- parallel: the one-thread workers fit seed s and seed s + 1 at the same time (the wall time until both end).

Every fit is the project's `train()` on a composed config (the full training split, the configured epochs), so it
pays what a trial pays: building the model, tracing the loop, fitting, validating, scoring the test set.
Printed: a table per repetition and the median ratio sequential / parallel (above 1: two workers finish pairs of
fits sooner). Last line: `pair_speedup=<median ratio> sequential_s=<median> parallel_s=<median> reps=<N>`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The configurations compared: the tutorial's baseline, and the default study's champion (a wider, longer fit
# with dropout, what most of a study's time goes into).
CONFIGS = {
    "baseline": [],
    "champion": ["+experiments=mnist-mlp_champion"],
}
ONE_THREAD = ["train.intra_op_threads=1", "train.inter_op_threads=1"]


def worker(connection: Connection, overrides: list[str]) -> None:
    """A worker process: compose once per seed it is sent, fit, and send back the fit's wall seconds."""
    import common  # noqa: F401  (puts src/ on the path and imports TensorFlow quietly)
    from common import compose_configs

    from mnist_study.train import train

    warm_up = compose_configs({"warm_up": [*overrides, "train.epochs=1", "seed=999"]})["warm_up"]
    train(warm_up)
    connection.send("ready")
    while (seed := connection.recv()) is not None:
        cfg = compose_configs({"fit": [*overrides, f"seed={seed}"]})["fit"]
        started = time.perf_counter()
        result = train(cfg)
        connection.send((time.perf_counter() - started, float(result["test_accuracy"])))


def start_worker(context: multiprocessing.context.SpawnContext, overrides: list[str]) -> Connection:
    """Start a worker process and return the end of its pipe that sends it seeds."""
    ours, theirs = context.Pipe()
    context.Process(target=worker, args=(theirs, overrides), daemon=True).start()
    return ours


def timed_pair(connections: list[Connection], seeds: tuple[int, int]) -> tuple[float, list[float]]:
    """Fit the two seeds: both on one worker one after the other, or one on each worker at once."""
    started = time.perf_counter()
    if len(connections) == 1:
        fits = []
        for seed in seeds:
            connections[0].send(seed)
            fits.append(connections[0].recv())
    else:
        for connection, seed in zip(connections, seeds, strict=True):
            connection.send(seed)
        fits = [connection.recv() for connection in connections]
    return time.perf_counter() - started, [accuracy for _, accuracy in fits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="champion")
    parser.add_argument("--override", action="append", default=[], help="an override for every fit")
    args = parser.parse_args()
    from common import median, print_table

    base = ["train.verbose=0", *CONFIGS[args.config], *args.override]
    context = multiprocessing.get_context("spawn")
    print(f"load average before: {os.getloadavg()[0]:.2f}; fits: {base}", flush=True)
    sequential = [start_worker(context, base)]
    parallel = [start_worker(context, [*base, *ONE_THREAD]) for _ in range(2)]
    for connection in [*sequential, *parallel]:
        if connection.recv() != "ready":
            raise RuntimeError("a worker did not start")
    rows, ratios, times = [], [], {"sequential": [], "parallel": []}
    for rep in range(args.reps):
        seeds = (2 * rep, 2 * rep + 1)
        arms = {"sequential": sequential, "parallel": parallel}
        order = list(arms) if rep % 2 == 0 else list(reversed(arms))
        for name in order:
            seconds, accuracies = timed_pair(arms[name], seeds)
            times[name].append(seconds)
            rows.append([str(rep), name, f"{seconds:.1f}", " ".join(f"{100 * a:.2f}" for a in accuracies)])
            print(f"rep {rep} {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
        ratios.append(times["sequential"][-1] / times["parallel"][-1])
    for connection in [*sequential, *parallel]:
        connection.send(None)
    print_table(["rep", "arm", "pair s", "test accuracy %"], rows)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"pair_speedup={median(ratios):.2f} sequential_s={median(times['sequential']):.1f} "
        f"parallel_s={median(times['parallel']):.1f} reps={args.reps}"
    )


if __name__ == "__main__":
    main()
