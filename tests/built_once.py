"""Something costly built once per test session, shared by the session's pytest-xdist workers.

`make test` runs two workers, each taking whole test files; a session fixture alone would be built once per
worker. The first worker to ask builds under a file lock in the folder the workers share, the other waits for it
and reuses the result; a build that failed fails every test that asked, with the first failure's message.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def shared_root(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The folder all of this session's workers see: the parent of each worker's own base folder under xdist."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def built_once(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """`root/name`, filled by `build(folder)` the first time any worker asks, then only read."""
    folder, done, failed = root / name, root / f"{name}.built", root / f"{name}.failed"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"{name} (built by another worker) failed:\n{failed.read_text()}", pytrace=False)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException as error:
                failed.write_text(str(error))
                raise
            done.touch()
    return folder
