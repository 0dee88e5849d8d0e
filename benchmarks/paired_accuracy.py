"""Does a training setting change what a fit learns? Two arms of the same config, paired by seed.

    .venv/bin/python benchmarks/paired_accuracy.py [--seeds 0 1 2 3 4] [--override KEY=VALUE ...]
        [--arm NAME=OVERRIDE[,OVERRIDE...]]  (two arms; default float32 against bfloat16)

Each seed trains both arms (alternating, in this process) on the full training split and scores them on the test
set. Printed: per seed the test accuracy of each arm and their difference, then the mean difference, its standard
deviation and the paired t-test's two-sided p-value. Accuracies do not depend on the machine's load (op
determinism); the fit seconds printed beside them do.

Last line: `mean_difference=<points> sd=<points> p=<paired t-test> seeds=<N>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import common  # noqa: F401  (first: puts src/ on the path and imports TensorFlow quietly)

# isort: split
from common import compose_configs, median, print_table
from scipy import stats

from mnist_study.train import train

DEFAULT_ARMS = ("float32=train.precision=float32", "bfloat16=train.precision=bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--override", action="append", default=[], help="an override for both arms")
    parser.add_argument("--arm", action="append", default=None, metavar="NAME=OVERRIDES")
    args = parser.parse_args()
    arms = {}
    for item in args.arm or DEFAULT_ARMS:
        name, _, overrides = item.partition("=")
        if not name or not overrides:
            raise ValueError(f"--arm {item!r}: expected NAME=OVERRIDE[,OVERRIDE...]")
        arms[name] = overrides.split(",")
    if len(arms) != 2:
        raise ValueError(f"--arm: give two arms, got {len(arms)}")
    first, second = arms
    base = ["train.verbose=0", *args.override]
    accuracies: dict[str, list[float]] = {name: [] for name in arms}
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    rows = []
    for seed in args.seeds:
        configs = compose_configs({name: [*base, *extra, f"seed={seed}"] for name, extra in arms.items()})
        # Alternate which arm goes first, so that neither always meets the same moment of the machine's load.
        order = list(arms) if seed % 2 == 0 else list(reversed(arms))
        for name in order:
            result = train(configs[name])
            accuracies[name].append(100 * result["test_accuracy"])
            seconds[name].append(result["fit_seconds"])
        difference = accuracies[second][-1] - accuracies[first][-1]
        rows.append([str(seed), *(f"{accuracies[name][-1]:.2f}" for name in arms), f"{difference:+.2f}"])
        print(f"seed {seed}: {rows[-1][1:]}", file=sys.stderr, flush=True)
    differences = [b - a for a, b in zip(accuracies[first], accuracies[second], strict=True)]
    spread = statistics.stdev(differences) if len(differences) > 1 else float("nan")
    p_value = float(stats.ttest_rel(accuracies[second], accuracies[first]).pvalue) if len(differences) > 1 else 1.0
    print(f"\narms: {first} = {arms[first]}, {second} = {arms[second]}; both with {base}")
    print_table(["seed", f"{first} test %", f"{second} test %", f"{second} - {first}"], rows)
    print(
        f"mean {statistics.mean(accuracies[first]):.2f} / {statistics.mean(accuracies[second]):.2f} %; "
        f"median fit seconds {median(seconds[first]):.1f} / {median(seconds[second]):.1f} (machine-dependent)"
    )
    mean_difference = statistics.mean(differences)
    print(f"mean_difference={mean_difference:+.3f} sd={spread:.3f} p={p_value:.3g} seeds={len(differences)}")


if __name__ == "__main__":
    main()
