"""Which knob bought what: a champion refitted with one of its knobs at a time put back to the tutorial's value.

    .venv/bin/python benchmarks/ablation.py [--experiment frontier_champion] [--seeds 0 1 2 3 4] [--workers 2]
        [--results benchmarks/results/frontier_ablation.jsonl]

Every arm is the experiment file (`python src/run.py <experiment>`) with one group of overrides from `KNOBS`: one
hidden layer instead of its depth, a constant learning rate instead of its schedule, no dropout, no input dropout,
no label smoothing, no max-norm bound, batch 128, rmsprop, the tutorial's 5 epochs. An arm that changes nothing in
the composed config (the champion never used that knob) is left out and named. Each arm trains as the report's
refits do (all 60 000 training images, no validation hold-out) at each seed and is scored on the test set; the
seeds pair the arms, so each arm's cost is its mean paired difference from the champion with a 95 % t interval.
Accuracies do not depend on the machine's load (op determinism); the fit seconds beside them do.

The fits run `--workers` at a time, each in its own process with an equal share of the cores (as the report's
refits do). Each arm's row goes to `--results` (JSON lines, with the date and commit measured) as soon as it is
complete; `scripts/results_page.py` turns the newest run's rows into the ablation table of docs/results.md.

Last line: `largest_cost=<arm> <points> champion=<mean %> arms=<N> seeds=<N>`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
from common import ROOT, compose_configs, print_table
from measured import commit
from omegaconf import OmegaConf

from mnist_study.report.refit import REFIT_OVERRIDES
from mnist_study.report.stats import summarize
from mnist_study.report.workers import thread_overrides
from mnist_study.train import train

CHAMPION = "champion"
# Each knob of the frontier family, put back to the tutorial's value (conf/'s defaults). Depth clears the deeper
# layers' widths too, so a one-layer arm holds no second width.
KNOBS: dict[str, tuple[str, ...]] = {
    "one hidden layer": ("model.layers=1", "model.units_2=null", "model.units_3=null"),
    "constant learning rate": ("schedule=constant",),
    "no hidden dropout": ("model.dropout=0",),
    "no input dropout": ("model.input_dropout=0",),
    "no label smoothing": ("train.label_smoothing=0",),
    "no max-norm": ("model.max_norm=0",),
    "batch 128": ("train.batch_size=128",),
    "rmsprop": ("optimizer=rmsprop",),
    "5 epochs": ("train.epochs=5",),
}


def arms(experiment: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """The champion and every knob that changes its composed config; and the knobs that change nothing."""
    base = (f"+experiments={experiment}", "train.verbose=0", *REFIT_OVERRIDES)
    candidates = {CHAMPION: base, **{name: (*base, *overrides) for name, overrides in KNOBS.items()}}
    configs = {name: OmegaConf.to_container(cfg) for name, cfg in compose_configs(candidates).items()}
    kept = {
        name: overrides
        for name, overrides in candidates.items()
        if name == CHAMPION or configs[name] != configs[CHAMPION]
    }
    return kept, [name for name in candidates if name not in kept]


def fit(name: str, overrides: Sequence[str], seed: int) -> tuple[str, int, float, float]:
    """One arm at one seed (in a worker process): (arm, seed, test accuracy, fit seconds)."""
    cfg = compose_configs({name: [*overrides, f"seed={seed}"]})[name]
    result = train(cfg)
    return name, seed, float(result["test_accuracy"]), float(result["fit_seconds"])


def arm_row(name: str, overrides: Sequence[str], accuracies: dict[int, float], champion: dict[int, float]) -> dict:
    """What one arm measured, against the champion on the same seeds."""
    seeds = sorted(accuracies)
    # A paired comparison: the t interval of the mean of per-seed differences.
    differences = summarize([100 * (accuracies[seed] - champion[seed]) for seed in seeds])
    return {
        "arm": name,
        "overrides": list(overrides),
        "seeds": seeds,
        "test_accuracy": [accuracies[seed] for seed in seeds],
        "mean": statistics.mean(accuracies.values()),
        "difference_points": differences.mean,
        "interval_points": [float(differences.ci_low), float(differences.ci_high)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="frontier_champion", help="a file in experiments/ (no .yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2, help="fits at once, each in its own process")
    parser.add_argument("--results", type=Path, help="append each arm's row here (JSON lines)")
    args = parser.parse_args()
    if not (ROOT / "experiments" / f"{args.experiment}.yaml").is_file():
        parser.error(f"--experiment {args.experiment}: no experiments/{args.experiment}.yaml; name a file there")
    kept, unchanged = arms(args.experiment)
    if unchanged:
        print(f"left out (the experiment already has the tutorial's value): {', '.join(unchanged)}", flush=True)
    threads = thread_overrides(args.workers)
    accuracies: dict[str, dict[int, float]] = {name: {} for name in kept}
    seconds: dict[str, list[float]] = {name: [] for name in kept}
    # The champion's seeds first, so that each arm's row can be written the moment its own fits are done.
    jobs = [(name, seed) for name in kept for seed in args.seeds]
    stamp = {"experiment": args.experiment, "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": commit()}
    rows = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fit, name, (*kept[name], *threads), seed) for name, seed in jobs]
        for future in as_completed(futures):
            name, seed, accuracy, fit_seconds = future.result()
            accuracies[name][seed] = accuracy
            seconds[name].append(fit_seconds)
            print(f"{name} seed={seed}: test_accuracy={accuracy:.4f} {fit_seconds:.1f}s", flush=True)
            ready = [arm for arm in kept if arm not in rows and len(accuracies[arm]) == len(args.seeds)]
            if len(accuracies[CHAMPION]) < len(args.seeds):
                continue
            for arm in ready:
                rows[arm] = {
                    **arm_row(arm, kept[arm], accuracies[arm], accuracies[CHAMPION]),
                    "median_fit_seconds": statistics.median(seconds[arm]),
                    **stamp,
                    "load_average": round(os.getloadavg()[0], 2),
                }
                if args.results:
                    with args.results.open("a") as output:
                        output.write(json.dumps(rows[arm]) + "\n")
    elapsed = time.perf_counter() - started
    print(f"\n{args.experiment}, {len(args.seeds)} seeds, {args.workers} at once: {elapsed:.0f} s")
    table = [
        [
            row["arm"],
            " ".join(row["overrides"][len(kept[CHAMPION]) :]) or "-",
            f"{100 * row['mean']:.2f}",
            f"{row['difference_points']:+.2f}",
            f"{row['interval_points'][0]:+.2f} .. {row['interval_points'][1]:+.2f}",
            f"{row['median_fit_seconds']:.0f}",
        ]
        for row in (rows[name] for name in kept)
    ]
    print_table(["arm", "overrides", "test %", "vs champion", "95 % interval", "fit s"], table)
    costs = {name: row["difference_points"] for name, row in rows.items() if name != CHAMPION}
    worst = min(costs, key=costs.__getitem__) if costs else "-"
    print(
        f"largest_cost={worst.replace(' ', '_')} {costs.get(worst, 0.0):+.2f} "
        f"champion={100 * rows[CHAMPION]['mean']:.2f} arms={len(costs)} seeds={len(args.seeds)}"
    )


if __name__ == "__main__":
    sys.exit(main())
