"""Test tooling, never part of the product: kill this process at a chosen call, to test what a kill leaves behind.

A test that puts this folder on PYTHONPATH and sets `MNIST_STUDY_TEST_KILL=<module>:<qualified name>[:<n>]` (say
`mnist_study.report.registry:move_aliases`, or `mlflow.tracking.client:MlflowClient.set_registered_model_alias:2`)
gets a process that, as the n-th call (1st by default) of that function begins, says so on stderr and ends itself
with SIGKILL: no clean-up runs, as after an out-of-memory kill. Python imports `sitecustomize` at start-up, before
the program; the function is wrapped the moment its module has been executed, so every caller sees the wrapper,
whether it imports the module or the name. Unset, nothing happens.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

VARIABLE = "MNIST_STUDY_TEST_KILL"
MARKER = "test seam: SIGKILL at"


def killing_at(function: Callable[..., Any], nth: int, spec: str) -> Callable[..., Any]:
    """`function`, but the process dies as its `nth` call begins."""
    calls = 0

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            print(f"{MARKER} {spec}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)

    return wrapper


class KillFinder(importlib.abc.MetaPathFinder):
    """Finds the target module as Python would, and wraps the target function once the module has run."""

    def __init__(self, module: str, qualified_name: str, nth: int, spec: str) -> None:
        self.module, self.qualified_name, self.nth, self.spec = module, qualified_name, nth, spec

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        found = importlib.util.find_spec(name)
        if found is None or found.loader is None:
            return found
        run_module = found.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            owner: Any = module
            *path_to_owner, attribute = self.qualified_name.split(".")
            for part in path_to_owner:
                owner = getattr(owner, part)
            setattr(owner, attribute, killing_at(getattr(owner, attribute), self.nth, self.spec))

        found.loader.exec_module = exec_module  # type: ignore[method-assign]
        return found


def install() -> None:
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    module, qualified_name, *count = spec.split(":")
    sys.meta_path.insert(0, KillFinder(module, qualified_name, int(count[0]) if count else 1, spec))


install()
