"""A new MLflow SQLite store for a test in milliseconds instead of seconds.

MLflow creates a SQLite store's tables by running its whole chain of schema migrations, which takes seconds of CPU
each time (benchmarks/README.md, The test suite). Tests that only need an empty store get a copy of one that MLflow
itself created once in this process, with its Default experiment removed: MLflow adds that one when it first opens
the copy, pointing at the copy's own artifact root, exactly as it does for a store it has just created. Tests about
how a store comes to exist (or not) create theirs the ordinary way.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import sqlite3
import tempfile
from pathlib import Path

STORE_FILE = "mlflow.db"


@functools.cache
def migrated_template() -> Path:
    """An empty store, its tables created and migrated by MLflow, without any experiment (once per process)."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    template = folder / STORE_FILE
    MlflowClient(f"sqlite:///{template}").search_experiments()
    with contextlib.closing(sqlite3.connect(template)) as connection, connection:
        connection.execute("DELETE FROM experiments")
    return template


def new_store(folder: Path) -> str:
    """The URI of a new, empty MLflow store at `folder/mlflow.db` (the folder is created if needed)."""
    target = folder / STORE_FILE
    if target.exists():
        raise ValueError(f"{target} exists already; new_store() only makes new stores")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_template(), target)
    return f"sqlite:///{target}"
