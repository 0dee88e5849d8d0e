"""Re-execute a logged run from its MLflow record alone and compare its metrics with the logged ones.

`python -m mnist_study.report.rerun --tracking-uri URI RUN_ID` reads the run's `config.yaml` artifact (the
resolved config, seed included), trains it again in this fresh process, and prints one JSON line: the verdict
("bit-identical" or the largest difference) and every compared metric. Exit status 0 when identical, 3 when not.
The report runs it in a subprocess, so the rerun shares no state (TensorFlow, caches) with the refits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from mnist_study import logged_config
from mnist_study.metrics import FINAL_METRICS, HISTORY_METRICS
from mnist_study.paths import PROJECT_ROOT, tracking_uri

DIFFERS_EXIT = 3
# Metrics as `{name: {step: value}}`; final metrics sit at step 0, history metrics at step = epoch.
Metrics = dict[str, dict[int, float]]


@dataclass(frozen=True)
class RerunResult:
    """The outcome of re-deriving one run."""

    run_id: str
    verdict: str
    identical: bool
    largest_difference: float
    largest_at: str
    compared: int
    logged: Metrics
    rerun: Metrics


def logged_metrics(client: MlflowClient, run_id: str) -> Metrics:
    """Every history metric at every step, and the final test metrics, as the run logged them."""
    run = client.get_run(run_id)
    metrics: Metrics = {}
    for key in HISTORY_METRICS:
        history = client.get_metric_history(run_id, key)
        if history:
            metrics[key] = {int(item.step): float(item.value) for item in history}
    for key in FINAL_METRICS:
        if key in run.data.metrics:
            metrics[key] = {0: float(run.data.metrics[key])}
    return metrics


def result_metrics(result: Mapping) -> Metrics:
    """`train()`'s result in the same shape as `logged_metrics`."""
    metrics: Metrics = {
        key: {epoch: float(value) for epoch, value in enumerate(values, start=1)}
        for key, values in result["history"].items()
        if key in HISTORY_METRICS
    }
    for key in FINAL_METRICS:
        metrics[key] = {0: float(result[key])}
    return metrics


def compare(run_id: str, logged: Metrics, rerun: Metrics) -> RerunResult:
    """Bit-identical when every logged value (same names, same steps) equals the rerun's exactly."""
    largest, where, compared, mismatched = 0.0, "", 0, []
    for key in sorted(set(logged) | set(rerun)):
        old, new = logged.get(key, {}), rerun.get(key, {})
        if set(old) != set(new):
            mismatched.append(f"{key}: logged steps {sorted(old)}, rerun steps {sorted(new)}")
            continue
        for step in sorted(old):
            compared += 1
            difference = abs(old[step] - new[step])
            if difference > largest:
                largest, where = difference, f"{key} at step {step}"
    identical = not mismatched and largest == 0.0 and compared > 0
    if identical:
        verdict = f"bit-identical ({compared} values)"
    elif mismatched:
        verdict = "differs: " + "; ".join(mismatched)
    elif compared == 0:
        verdict = "nothing to compare: the run logged no metrics"
    else:
        verdict = f"differs: largest |difference| {largest:.3g} in {where} ({compared} values compared)"
    return RerunResult(run_id, verdict, identical, largest, where, compared, logged, rerun)


def rerun_here(tracking_uri: str, run_id: str) -> RerunResult:
    """Train the logged run again in this process and compare (the subprocess side of `rerun_in_subprocess`)."""
    # A progress bar for one small file is noise on the report's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=tracking_uri)
    cfg = logged_config.load(client, run_id)
    logged = logged_metrics(client, run_id)
    import mnist_study.quiet_tensorflow  # noqa: F401  (before keras, so its start-up noise stays hidden)
    from mnist_study.train import train

    with open_dict(cfg):
        cfg.train.verbose = 0
    return compare(run_id, logged, result_metrics(train(cfg)))


def command(tracking_uri: str, run_id: str) -> list[str]:
    """The command that re-derives a run (what the report quotes and runs)."""
    return [sys.executable, "-m", "mnist_study.report.rerun", "--tracking-uri", tracking_uri, run_id]


def rerun_in_subprocess(tracking_uri: str, run_id: str, timeout: float = 3600) -> RerunResult:
    """Re-derive a run in a fresh Python process and return its verdict."""
    completed = subprocess.run(
        command(tracking_uri, run_id), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode not in (0, DIFFERS_EXIT) or not lines:
        raise RuntimeError(f"rerun of {run_id} exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    payload = json.loads(lines[-1])
    for key in ("logged", "rerun"):
        payload[key] = {
            name: {int(step): value for step, value in steps.items()} for name, steps in payload[key].items()
        }
    return RerunResult(**payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None, help="default: the project's rule (mnist_study.paths)")
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    result = rerun_here(args.tracking_uri or tracking_uri(), args.run_id)
    print(result.verdict, file=sys.stderr)
    print(json.dumps(asdict(result)), flush=True)
    return 0 if result.identical else DIFFERS_EXIT


if __name__ == "__main__":
    sys.exit(main())
