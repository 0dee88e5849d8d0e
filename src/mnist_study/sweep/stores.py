"""A store that fails mid-sweep (the MLflow tracking store, the Optuna storage), told apart from a failed trial.

When a store fails, every trial run from then on would fail for the same reason: the sweep stops with one line
that names the store, the running trial is queued again, and the same command resumes once the store works.
"""

from __future__ import annotations

import contextlib
import io

import optuna
from hydra.core.utils import JobReturn, JobStatus
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from mnist_study.secrets import redact

# Errors of a failing store: MLflow wraps its database errors; Optuna's RDB storage raises SQLAlchemy's or its own.
STORE_ERRORS = (MlflowException, SQLAlchemyError, optuna.exceptions.StorageInternalError)


class StoreFailure(RuntimeError):
    """The MLflow store or the Optuna storage failed while a sweep ran; its message is the one line users see."""


def job_store_error(result: JobReturn) -> Exception | None:
    """The job's exception when it is a failure of the MLflow store or the Optuna storage, not of the trial."""
    if result.status == JobStatus.COMPLETED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra re-raises the job's exception, with a line.
            _ = result.return_value
    except STORE_ERRORS as error:
        return error if is_store_failure(error) else None
    except Exception:
        return None
    return None


def is_store_failure(error: BaseException) -> bool:
    """MLflow reports a database it cannot use as TEMPORARILY_UNAVAILABLE; SQLAlchemy and Optuna by type."""
    if isinstance(error, MlflowException):
        return error.error_code == "TEMPORARILY_UNAVAILABLE"
    return True


def store_failure_text(error: BaseException, tracking_uri: str, storage_url: str) -> str:
    """One line: which store failed, why, and that the study is intact and resumes with the same command."""
    store = (
        f"MLflow store {tracking_uri}" if isinstance(error, MlflowException) else f"Optuna storage {storage_url}"
    )
    return redact(
        f"the {store} failed mid-sweep ({first_line(error)}); finished trials are kept and the running one is "
        "queued again: rerun the same command once the store works"
    )


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
