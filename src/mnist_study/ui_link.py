"""The link `make ui` prints: the study's experiment in MLflow's UI, opened on its runs table.

MLflow 3's UI has a mode switch (GenAI | Model training, top left) that starts on GenAI in a fresh browser and is
remembered per browser: clicking the experiment there opens a GenAI overview ("Traces 0"), not the runs. The query
`workflowType=machine_learning` opens the Model training view whatever the browser remembers. The experiment's id
is read from the store without starting the UI (a SQLite store is only read, never created or migrated).

Printed by `python -m mnist_study.launch ui` (make ui) before the UI starts.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import NamedTuple

from mnist_study.paths import DEFAULT_TRACKING_URI, default_experiment

MODEL_TRAINING = "workflowType=machine_learning"


class UiLink(NamedTuple):
    """Where to point a browser, the experiment's id (None when the store has no such experiment) and a note."""

    url: str
    experiment_id: str | None
    note: str


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment in MLflow's UI, on its runs table (Model training view) whatever the browser remembers."""
    return f"{base}/#/experiments/{experiment_id}?{MODEL_TRAINING}"


def find_experiment(tracking_uri: str, name: str) -> tuple[str, str] | None:
    """The experiment's id and lifecycle stage (`active` or `deleted`), or None if the store does not hold it."""
    if tracking_uri.startswith("sqlite:///"):
        return _find_in_sqlite(Path(tracking_uri.removeprefix("sqlite:///")), name)
    from mlflow.tracking import MlflowClient  # Other stores: MLflow's client (seconds to import).

    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    return None if experiment is None else (experiment.experiment_id, experiment.lifecycle_stage)


def _find_in_sqlite(database: Path, name: str) -> tuple[str, str] | None:
    """Read MLflow's `experiments` table directly, read-only: a missing or empty store stays as it is."""
    if not database.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            row = connection.execute(
                "SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (name,)
            ).fetchone()
    except sqlite3.OperationalError:  # Not an MLflow store yet (no tables).
        return None
    return None if row is None else (str(row[0]), str(row[1]))


def ui_link(base: str, tracking_uri: str = DEFAULT_TRACKING_URI, name: str | None = None) -> UiLink:
    """The link to print for an MLflow UI at `base` over `tracking_uri`: the experiment's runs table when it
    exists, else the UI's front page with what to do."""
    name = name or default_experiment()
    found = find_experiment(tracking_uri, name)
    if found is None:
        return UiLink(f"{base}/", None, f"(no experiment {name!r} yet: `make sweep` creates it)")
    experiment_id, stage = found
    if stage != "active":
        return UiLink(f"{base}/", None, f"(experiment {name!r} is deleted: restore it from the UI's trash)")
    return UiLink(experiment_url(base, experiment_id), experiment_id, f"on the runs of experiment {name!r}")
