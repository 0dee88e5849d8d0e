"""The fast tier's one rule that a test cannot see in itself: it starts no other program.

A test that is not marked `slow` runs in `pytest -m "not slow"`, which a developer runs while working and which
must stay under a minute and a half. Starting a Python subprocess costs seconds (TensorFlow, Hydra and MLflow are
imported again), so a fast test that starts one is a slow test in disguise. `refusing_subprocesses()` makes every
attempt fail loudly, even when the code under test catches the error, so the test is moved or rewritten instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The product's own provenance asks git for the commit of every tracked run; git answers in milliseconds.
ALLOWED_PROGRAMS = frozenset({"git"})


def program_of(args: str | bytes | os.PathLike[str] | Sequence[Any], executable: Any) -> str:
    """The name of the program a `Popen` call starts (`python`, `make`, ...)."""
    if executable is not None:
        return Path(os.fsdecode(executable)).name
    if isinstance(args, (str, bytes, os.PathLike)):
        return Path(os.fsdecode(args).split()[0]).name
    return Path(os.fsdecode(args[0])).name


def command_text(args: str | bytes | os.PathLike[str] | Sequence[Any]) -> str:
    """The command as one short line for the failure message."""
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
    else:
        text = " ".join(os.fsdecode(part) for part in args)
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def refusing_subprocesses() -> Iterator[list[str]]:
    """While inside, starting any program but git (and forking) raises; yields the commands that were refused."""
    refused: list[str] = []
    execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]
    fork = os.fork

    def guarded_execute_child(self: subprocess.Popen[Any], args: Any, executable: Any, *rest: Any) -> Any:
        if program_of(args, executable) in ALLOWED_PROGRAMS:
            return execute_child(self, args, executable, *rest)
        refused.append(command_text(args))
        raise RuntimeError(f"a fast-tier test may start no subprocess: {refused[-1]}")

    def guarded_fork() -> int:
        refused.append("os.fork()")
        raise RuntimeError("a fast-tier test may not fork")

    subprocess.Popen._execute_child = guarded_execute_child  # type: ignore[attr-defined]
    os.fork = guarded_fork
    try:
        yield refused
    finally:
        subprocess.Popen._execute_child = execute_child  # type: ignore[attr-defined]
        os.fork = fork


def refusal_message(refused: list[str]) -> str:
    """One line naming what the test started and where it belongs."""
    return (
        f"this test is in the fast tier (not marked slow) but started {refused[0]!r}"
        f"{f' and {len(refused) - 1} more' if len(refused) > 1 else ''}; fix: mark it @pytest.mark.slow, "
        "or test the function in this process"
    )
