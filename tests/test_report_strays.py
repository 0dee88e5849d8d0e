"""A report closes the runs a dead report process left RUNNING, on a real SQLite MLflow store, and leaves alone the
runs of a process that still lives."""

from __future__ import annotations

import os
from pathlib import Path

from mlflow.tracking import MlflowClient

from mlflow_stores import new_store
from mnist_study.report.strays import (
    CLOSED_BY_TAG,
    CLOSED_REASON_TAG,
    HOST_TAG,
    PID_TAG,
    PROCESS_START_TAG,
    close_strays,
    process_tags,
)
from mnist_study.sweep.liveness import this_host


def free_pid() -> int:
    """A pid no process has now."""
    return next(pid for pid in range(4_000_000, 3_000_000, -1) if not os.path.exists(f"/proc/{pid}"))


def test_runs_of_dead_report_processes_are_closed_killed_and_tagged_live_ones_left_alone(tmp_path: Path) -> None:
    client = MlflowClient(new_store(tmp_path))
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())

    def run(name: str, study: str = "smoke", **tags: str) -> str:
        return client.create_run(experiment, run_name=name, tags={"report": study, **tags}).info.run_id

    me = process_tags()
    current = run("report smoke", **me)
    live = run("report smoke", **me)  # Another report of this very process: it runs.
    dead = {HOST_TAG: this_host(), PID_TAG: str(free_pid()), PROCESS_START_TAG: "123"}
    killed_report = run("report smoke", **dead)
    killed_refit = run("trial 1 seed=0", **dead, **{"mlflow.parentRunId": killed_report})
    # The pid lives, but it is this process, started at another time than the one recorded: the pid was reused.
    reused_pid = run("report smoke", **{**me, PROCESS_START_TAG: "1"})
    unrecorded = run("report smoke")  # From a report before runs recorded their process.
    elsewhere = run("report smoke", **{**dead, HOST_TAG: "another-host"})
    other_study = run("report other", study="other", **dead)
    finished = run("report smoke", **dead)
    client.set_terminated(finished, "FINISHED")

    closed = close_strays(client, experiment, "smoke", current)

    assert {item.info.run_id for item in closed} == {killed_report, killed_refit, reused_pid, unrecorded}
    for run_id in (killed_report, killed_refit, reused_pid, unrecorded):
        stored = client.get_run(run_id)
        assert stored.info.status == "KILLED"
        assert stored.data.tags[CLOSED_BY_TAG] == current
        assert "was gone (killed)" in stored.data.tags[CLOSED_REASON_TAG]
    assert dead[PID_TAG] in client.get_run(killed_report).data.tags[CLOSED_REASON_TAG]
    for run_id in (current, live, elsewhere, other_study):
        assert client.get_run(run_id).info.status == "RUNNING"
        assert CLOSED_BY_TAG not in client.get_run(run_id).data.tags
    assert client.get_run(finished).info.status == "FINISHED"
