"""Start a web server for a test, a benchmark or a screenshot, wait until it answers, and always stop it.

Test tooling, not product. The servers' own command lines are defined once, in the product
(`mnist_study.launch`, which `make ui`, `make serve` and `make dashboard` run); this module only runs them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The servers run on a closed machine: MLflow's usage telemetry could only fail, so it is switched off.
QUIET_SERVERS = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_target(target: str, **variables: str | int) -> list[str]:
    """The command line of a Makefile target run as a person runs it (`make ui UI_PORT=5123`), from any folder."""
    settings = [f"{name}={value}" for name, value in variables.items()]
    return ["make", "--no-print-directory", "-s", "-C", str(PROJECT_ROOT), target, *settings]


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    port: int,
    log_path: Path,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Start a web server (its own process group), wait until it answers on `port`, yield its base URL, stop it.

    `env` adds to the environment. Raises RuntimeError with the server's log when it exits early or does not
    answer within `timeout` seconds.
    """
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        # A session of its own, so that stopping it also stops what it starts (make, uvicorn, gunicorn workers).
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
            env={**os.environ, **QUIET_SERVERS, **(env or {})},
        )
        try:
            _wait_until_up(process, url, log_path, timeout)
            yield url
        finally:
            _stop(process)


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # It answers, if not with 200 at "/": the server is up.
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: no answer after {timeout:.0f}s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
