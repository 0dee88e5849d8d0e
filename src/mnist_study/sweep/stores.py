"""A store that fails mid-sweep (the MLflow tracking store, the Optuna storage), told apart from a failed trial.

A store that stops answering (a database restarted, a server down) is retried with backoff for a bounded time
(`retrying`). If it does not come back, every trial run from then on would fail for the same reason: the sweep
stops with one line that names the store, and the same command resumes once the store works.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
from hydra.core.utils import JobReturn, JobStatus
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from mnist_study.errors import first_line
from mnist_study.secrets import redact

log = logging.getLogger(__name__)
Result = TypeVar("Result")
# The longest pause between two attempts at a store that does not answer.
MAX_BACKOFF_SECONDS = 15.0

# Errors of a failing store: MLflow wraps its database errors; Optuna's RDB storage raises SQLAlchemy's or its own.
STORE_ERRORS = (MlflowException, SQLAlchemyError, optuna.exceptions.StorageInternalError)


class StoreFailure(RuntimeError):
    """The MLflow store or the Optuna storage failed while a sweep ran; its message is the one line users see."""


def job_exception(result: JobReturn) -> Exception | None:
    """The exception a job raised; None when it completed. Hydra re-raises it on reading `return_value`, with a
    line to stderr that is kept out of sight."""
    if result.status == JobStatus.COMPLETED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            _ = result.return_value
    except Exception as error:
        return error
    return None


def job_store_error(result: JobReturn) -> Exception | None:
    """The job's exception when it is a failure of the MLflow store or the Optuna storage, not of the trial."""
    error = job_exception(result)
    return error if isinstance(error, STORE_ERRORS) and is_store_failure(error) else None


def is_store_failure(error: BaseException) -> bool:
    """MLflow reports a database it cannot use as TEMPORARILY_UNAVAILABLE; SQLAlchemy and Optuna by type."""
    if isinstance(error, MlflowException):
        return error.error_code == "TEMPORARILY_UNAVAILABLE"
    return True


def is_transient(error: BaseException) -> bool:
    """Whether an error says the store is unreachable for now (a lost or refused connection), not that a request
    was wrong: a connection error anywhere in the chain of causes, or MLflow's TEMPORARILY_UNAVAILABLE."""
    while error is not None:
        if isinstance(error, OperationalError | InterfaceError | ConnectionError):
            return True
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, MlflowException) and error.error_code == "TEMPORARILY_UNAVAILABLE":
            return True
        error = error.__cause__ or error.__context__
    return False


def retrying(call: Callable[[], Result], retry_s: float, store: str) -> Result:
    """`call()`, attempted again with growing pauses while `store` is unreachable, for up to `retry_s` seconds;
    after that (or on any other error) the error is raised."""
    deadline = time.monotonic() + retry_s
    pause = 1.0
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error) or time.monotonic() + pause > deadline:
                raise
            shown = redact(store)
            log.warning("%s is not answering (%s); trying again in %.0f s", shown, first_line(error), pause)
        time.sleep(pause)
        pause = min(2 * pause, MAX_BACKOFF_SECONDS)


def store_failure_text(error: BaseException, tracking_uri: str, storage_url: str, retry_s: float) -> str:
    """One line: which store failed, why, and that the study is intact and resumes with the same command."""
    store = (
        f"MLflow store {tracking_uri}" if isinstance(error, MlflowException) else f"Optuna storage {storage_url}"
    )
    return redact(
        f"the {store} stopped answering mid-sweep ({first_line(error)}) and did not come back within "
        f"hydra.sweeper.store_retry_s={retry_s:g} s; finished trials are kept: rerun the same command once the "
        "store works"
    )
