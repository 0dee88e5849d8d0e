"""The fast test tier (or any pytest selection) in this checkout against a reference checkout, side by side.

A developer runs `.venv/bin/python -m pytest -m "not slow"` every few minutes; this benchmark times it here and in
another checkout of the project (a git worktree at an earlier commit, with its own `.venv`: `git worktree add
../ref <commit> && (cd ../ref && make install)`), alternately, so that the machine's drift falls on both alike.
Each repetition is a fresh pytest process as the developer starts it (two workers on two cores, `-n auto`); its
wall time and the CPU time of it and its workers are recorded.

Run: .venv/bin/python benchmarks/tier_time.py --reference ../ref [--repeats 2] [--select "not slow"]
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

from measured import commit

ROOT = Path(__file__).resolve().parents[1]
# pytest's closing line, e.g. "407 passed, 22 warnings in 97.88s (0:01:37)".
SUMMARY = re.compile(r"^=*\s*(\d+) passed.* in ([\d.]+)s")


def children_cpu_s() -> float:
    """User plus system CPU seconds of every finished child process so far (pytest's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class TierRun(NamedTuple):
    """One pytest run: tests passed, pytest's own seconds, wall seconds, CPU seconds of it and its workers."""

    passed: int
    pytest_s: float
    wall_s: float
    cpu_s: float


def run_tier(checkout: Path, select: str) -> TierRun:
    """One pytest run in `checkout`."""
    cpu_before, started = children_cpu_s(), time.perf_counter()
    done = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-m", "pytest", "-m", select, "-q", "-p", "no:cacheprovider"],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu_before
    summary = next((match for line in done.stdout.splitlines() if (match := SUMMARY.match(line))), None)
    if done.returncode != 0 or summary is None:
        raise SystemExit(f"error: pytest in {checkout} exited {done.returncode}:\n{done.stdout[-3000:]}")
    return TierRun(int(summary.group(1)), float(summary.group(2)), wall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="another checkout, with its own .venv")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--select", default="not slow", help="pytest's -m expression (default: the fast tier)")
    arguments = parser.parse_args()
    reference = arguments.reference.resolve()
    if not (reference / ".venv" / "bin" / "python").exists():
        raise SystemExit(f"error: {reference} has no .venv; fix: (cd {reference} && make install)")
    checkouts = {"this": ROOT, "reference": reference}
    results: dict[str, list[TierRun]] = {name: [] for name in checkouts}
    print(f"# this {commit()}, reference {commit(reference)}; pytest -m {arguments.select!r}", flush=True)
    for repetition in range(arguments.repeats):
        # Alternate which goes first, so that neither always runs on a machine the other has just warmed.
        order = list(checkouts) if repetition % 2 == 0 else list(reversed(checkouts))
        for name in order:
            run = run_tier(checkouts[name], arguments.select)
            results[name].append(run)
            print(
                f"{name}: {run.passed} passed, pytest {run.pytest_s:.1f} s, wall {run.wall_s:.1f} s, "
                f"CPU {run.cpu_s:.1f} s",
                flush=True,
            )
    print("| checkout | passed | pytest s (median) | each | CPU s (median) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        each = ", ".join(f"{run.pytest_s:.1f}" for run in runs)
        pytest_s = statistics.median(run.pytest_s for run in runs)
        cpu_s = statistics.median(run.cpu_s for run in runs)
        print(f"| {name} | {runs[0].passed} | {pytest_s:.1f} | {each} | {cpu_s:.1f} |")
    this, then = (statistics.median(run.pytest_s for run in results[name]) for name in checkouts)
    print(f"tier_ratio={this / then:.2f} this_s={this:.1f} reference_s={then:.1f}")


if __name__ == "__main__":
    main()
