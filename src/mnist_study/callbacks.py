"""The Keras callbacks a tracked training attaches: every epoch logged to MLflow as it ends, and kept in memory."""

from __future__ import annotations

# First, so that TensorFlow's start-up noise is silenced before anything imports keras.
import mnist_study.quiet_tensorflow  # noqa: F401

# isort: split
import time
from concurrent.futures import Future, ThreadPoolExecutor

import keras
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from mnist_study.metrics import HISTORY_METRICS


class EpochLogger(keras.callbacks.Callback):
    """Log loss and accuracy (train and validation) to MLflow at step = epoch (1-based) as each epoch ends.

    By default each epoch's write runs on a background thread of this logger, so a slow tracking store (SQLite
    on a busy disk, a remote server) never stalls the next epoch; writes stay in epoch order. `flush` waits for
    every write and raises if any failed; `tracked_run` calls it before the run is marked terminated.
    MLflow's own `log_batch(synchronous=False)` is not used: its queue thread polls with a one-second timeout,
    and terminating the run waits for that poll, which cost most of a second per run
    (benchmarks/README.md).
    """

    def __init__(self, client: MlflowClient, run_id: str, synchronous: bool = False) -> None:
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.synchronous = synchronous
        self.pending: list[Future[None]] = []
        self._writer: ThreadPoolExecutor | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), timestamp, epoch + 1)
            for key, value in (logs or {}).items()
            if key in HISTORY_METRICS
        ]
        if self.synchronous:
            self.client.log_batch(self.run_id, metrics=metrics)
            return
        if self._writer is None:
            # One worker: the epochs' writes reach the store in order.
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-epochs")
        self.pending.append(self._writer.submit(self.client.log_batch, self.run_id, metrics=metrics))

    def flush(self) -> None:
        """Block until every epoch logged so far is stored; re-raise the first failed write."""
        pending, self.pending = self.pending, []
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        for write in pending:
            write.result()


class EpochRecorder(keras.callbacks.Callback):
    """Record every epoch's logs, so that a pruned run, whose `train` never returns, still has its curves."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
