"""What `tracking.system_metrics=true` costs a run: the CPU time MLflow's system-metrics sampler takes.

A run is opened with `tracking.tracked_run` (what every job goes through) and held open, idle, for `--seconds`,
once with the sampler off and once on at `--interval` seconds, `--repeats` times each, in a temporary SQLite
store. The difference in this process's CPU time, divided by the number of samples taken, is the CPU cost of one
sample (reading CPU, memory, disk and network use; checking the run; logging the metrics). Measured as CPU time
rather than as a slower fit, it is not drowned by the noise of a shared machine. At the default interval the
sampler takes that cost every `tracking.system_metrics_interval_s` seconds, out of a fit that keeps at least one
core busy the whole time: the last line says what fraction of one core that is.

Run: .venv/bin/python benchmarks/system_metrics.py [--seconds 60] [--interval 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hydra import compose, initialize_config_dir  # noqa: E402

from mnist_study.tracking import tracked_run  # noqa: E402


def cpu_seconds_of_an_idle_run(folder: Path, seconds: float, interval: float | None) -> float:
    """This process's CPU time while one run is held open `seconds` long, sampled every `interval` (None: off)."""
    overrides = [f"tracking.uri=sqlite:///{folder}/mlflow.db", f"tracking.artifact_location={folder}/mlruns"]
    if interval is not None:
        overrides += ["tracking.system_metrics=true", f"tracking.system_metrics_interval_s={interval}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with tracked_run(cfg, "idle", tags={}):
        start = time.process_time()
        time.sleep(seconds)
        used = time.process_time() - start
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=1, help="sampling interval of the measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--default-interval", type=float, default=10, help="tracking.system_metrics_interval_s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="system-metrics-") as scratch:
        folder = Path(scratch)
        cpu_seconds_of_an_idle_run(folder, 1, None)  # The store's tables are created once, outside the timing.
        off, on = [], []
        for _ in range(args.repeats):
            off.append(cpu_seconds_of_an_idle_run(folder, args.seconds, None))
            on.append(cpu_seconds_of_an_idle_run(folder, args.seconds, args.interval))
    samples = args.seconds / args.interval
    per_sample = (statistics.median(on) - statistics.median(off)) / samples
    share = per_sample / args.default_interval
    print(f"idle run, {args.seconds:.0f} s, {args.repeats} repeats: CPU seconds off {off}, on {on}")
    print(f"one sample: {per_sample * 1000:.1f} ms of CPU ({samples:.0f} samples at {args.interval} s)")
    print(f"at {args.default_interval:.0f} s a sample: {share:.3%} of one core, the least a fit keeps busy")


if __name__ == "__main__":
    main()
