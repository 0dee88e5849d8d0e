"""Re-execute a logged run from its MLflow record alone and compare its metrics with the logged ones.

`python -m mnist_study.report.rerun --tracking-uri URI RUN_ID` reads the run's `config.yaml` artifact (the
resolved config, seed included), trains it again in this fresh process, and prints one JSON line: the verdict
("bit-identical" or the largest difference) and every compared metric. Exit status 0 when identical, 3 when not.
The report runs it in a subprocess, so the rerun shares no state (TensorFlow, caches) with the refits, and
records the outcome on its own MLflow run at once (`record`): a report started again after a kill reuses the
outcome of a rerun of the same run by the same code (`recorded`) instead of training it again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from mnist_study import logged_config
from mnist_study.data import data_hashes
from mnist_study.metrics import FINAL_METRICS, HISTORY_METRICS
from mnist_study.paths import PROJECT_ROOT, tracking_uri
from mnist_study.provenance import code_version, key_of

DIFFERS_EXIT = 3
# The report run's tag that names which rerun it recorded (see `rerun_key`), and the artifact that holds it.
RERUN_KEY_TAG = "rerun.key"
RERUN_ARTIFACT = "rerun.json"
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
    # The report run whose rerun this outcome is, when a later report reused it instead of rerunning.
    reused_from: str | None = None


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
    return from_json(json.loads(lines[-1]))


def from_json(payload: dict) -> RerunResult:
    """A `RerunResult` read back from its JSON form (whose step keys are strings)."""
    for key in ("logged", "rerun"):
        payload[key] = {
            name: {int(step): value for step, value in steps.items()} for name, steps in payload[key].items()
        }
    return RerunResult(**payload)


def rerun_key(run_id: str) -> str | None:
    """What a rerun of `run_id` depends on besides the run's own record: the code that reruns it and the data;
    None outside a git work tree, where no code can be said to equal another."""
    code = code_version()
    return None if code == "unknown" else key_of({"rerun_of": run_id}, data_hashes(), code)


def record(client: MlflowClient, report_run_id: str, key: str | None, result: RerunResult) -> None:
    """Keep a rerun's outcome on the report run that ran it, under its key, as soon as it is known."""
    # The artifact first: a report killed between the two leaves no key that names a missing outcome.
    client.log_dict(report_run_id, asdict(result), RERUN_ARTIFACT)
    tags = {"rerun.verdict": result.verdict, "rerun.run_id": result.run_id}
    if result.reused_from is not None:
        tags["rerun.reused_from"] = result.reused_from
    if key is not None:
        tags[RERUN_KEY_TAG] = key
    client.log_batch(report_run_id, tags=[RunTag(name, value) for name, value in tags.items()])


def recorded(client: MlflowClient, experiment_id: str, key: str | None) -> tuple[str, RerunResult] | None:
    """(the report run that recorded it, the outcome) of the latest rerun with this key, or None."""
    if key is None:
        return None
    query = f"tags.`{RERUN_KEY_TAG}` = '{key}'"
    for run in client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"]):
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = client.download_artifacts(run.info.run_id, RERUN_ARTIFACT, folder)
            except (MlflowException, OSError):  # An outcome that cannot be read back is not reused.
                continue
            return run.info.run_id, from_json(json.loads(Path(path).read_text()))
    return None


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
