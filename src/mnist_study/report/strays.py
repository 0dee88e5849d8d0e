"""The runs a killed report left RUNNING, closed by the next report on the same study.

A report closes its own runs whatever happens to it in Python (`tracking.tracked_run`), but a SIGKILL (an
out-of-memory kill, a batch system's time limit, a lost machine) ends the process before it can. Every report run
and refit therefore records the process that runs it (host, pid, the process's start time); a report starting
later closes the runs of its study that are RUNNING although their process is gone, KILLED, tagged with which
report closed them and why, as the sweep closes its dead workers' runs. A run whose process still lives (another
report running at the same time) or lives on another host is left alone: only its own process can tell.
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mnist_study.sweep.liveness import gone, this_host, worker_attrs
from mnist_study.sweep.schema import HOST, PID, PROCESS_START
from mnist_study.tracking import close_killed, running_runs

# The tags that say which process runs a report run or a refit.
HOST_TAG, PID_TAG, PROCESS_START_TAG = "process.host", "process.pid", "process.start"
# The tags a closed run gets: the report run that closed it, and why.
CLOSED_BY_TAG, CLOSED_REASON_TAG = "closed_by", "closed_reason"


def process_tags() -> dict[str, str]:
    """This process, as the tags `process_gone` reads back."""
    attrs = worker_attrs()
    return {HOST_TAG: attrs[HOST], PID_TAG: str(attrs[PID]), PROCESS_START_TAG: str(attrs[PROCESS_START])}


def process_gone(run: Run) -> bool:
    """Whether the process that ran `run` is gone; a run that recorded no process (a report from before process
    tags) counts as gone, since no live process will ever close it."""
    tags = run.data.tags
    if HOST_TAG not in tags or not tags.get(PID_TAG, "").isdigit():
        return True
    started = tags.get(PROCESS_START_TAG)
    return gone(tags[HOST_TAG], int(tags[PID_TAG]), None if started in (None, "None") else started)


def close_strays(client: MlflowClient, experiment_id: str, study_name: str, report_run_id: str) -> list[Run]:
    """Close the study's report runs and refits left RUNNING by a dead report process; return those closed and
    print one line for any left alone because its process may still run."""
    closed = []
    for run in running_runs(client, experiment_id, f"tags.report = '{study_name}'"):
        if run.info.run_id == report_run_id:
            continue
        tags = run.data.tags
        if not process_gone(run):
            where = tags.get(HOST_TAG)
            print(
                f"report run {run.info.run_id} ({run.info.run_name}) is RUNNING in process {tags.get(PID_TAG)} on "
                f"{where}{'' if where == this_host() else ' (another host)'}; left alone",
                flush=True,
            )
            continue
        process = f"{tags.get(PID_TAG, 'unrecorded')} on {tags.get(HOST_TAG, 'an unrecorded host')}"
        reason = f"its report process ({process}) was gone (killed) before it could close this run"
        close_killed(client, run.info.run_id, {CLOSED_BY_TAG: report_run_id, CLOSED_REASON_TAG: reason})
        closed.append(run)
    return closed
