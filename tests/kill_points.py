"""Where the sweep's fault tests kill a worker: each step of a trial's life, as a kill-seam spec.

A worker can die at any instant; these are the instants between two writes to two stores (or to one store twice)
where a death leaves something half-written for the next worker to repair. Each is the start of a call the product
makes anyway (mostly a `TrialLedger` method), killed by the test-only seam in `tests/kill_seam/sitecustomize.py`,
so the product holds no fault-injection code.
"""

from __future__ import annotations

import os
from pathlib import Path

SEAM = Path(__file__).parent / "kill_seam"
SEAM_VARIABLE = "MNIST_STUDY_TEST_KILL"

# In the order a trial lives them; the value is `module:qualified name[:n]` (the n-th call, the first by default).
KILL_POINTS = {
    # The trial is RUNNING in Optuna; nothing else recorded yet (the budget check follows every ask).
    "after_ask": "mnist_study.sweep.ledger:TrialLedger.is_surplus",
    # The job's MLflow run exists; its id is not yet recorded on the trial (the job joins the trial next).
    "after_mlflow_run": "mnist_study.sweep.ledger:TrialLedger.join",
    # The job trains; its run id is on the trial, its first epoch is done and about to be reported.
    "mid_training": "mnist_study.sweep.ledger:TrialLedger.report",
    # A dead worker's trial is failed; its params are not yet queued, its run not yet closed.
    "during_recovery": "mnist_study.sweep.ledger:TrialLedger.requeue",
    # Optuna holds the verdict; the MLflow run is not yet tagged with it.
    "after_tell": "mnist_study.sweep.parent_run:ParentRun.tag_child",
}


def killed_at(step: str) -> dict[str, str]:
    """The environment of a process that kills itself at `step` (a key of KILL_POINTS)."""
    path = os.pathsep.join(filter(None, [str(SEAM), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, SEAM_VARIABLE: KILL_POINTS[step]}
