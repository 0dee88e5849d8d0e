"""The suite's own rules: a fast-tier test starts no subprocess; a missing system package skips it, or fails it
under CI."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

import conftest
from fast_tier import refusal_message, refusing_subprocesses
from mnist_study.report.workers import cores


def test_a_python_subprocess_is_refused_and_recorded_even_when_its_error_is_swallowed() -> None:
    # Code under test that hides the error (the suppress): the record still fails the test.
    with refusing_subprocesses() as refused, contextlib.suppress(RuntimeError):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert refused == [f"{sys.executable} -c pass"]
    assert refusal_message(refused).startswith(
        f"this test is in the fast tier (not marked slow) but started '{sys.executable}"
    )
    assert "fix: mark it @pytest.mark.slow" in refusal_message(refused)


def test_git_is_allowed_and_everything_is_restored_afterwards() -> None:
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]
    with refusing_subprocesses() as refused:
        assert subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.startswith(
            "git version"
        )
    assert refused == []
    assert subprocess.Popen._execute_child is original  # type: ignore[attr-defined]


@pytest.mark.parametrize(("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_a_missing_system_package_skips_on_a_developer_s_machine_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setitem(conftest.SYSTEM_PACKAGES, "nothing", (lambda: False, "apt-get install nothing"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(
        outcome, match=r"nothing is not installed \(apt-get install nothing; \.ci/run installs it\)"
    ):
        conftest.require_system("nothing")


def test_an_installed_package_passes_and_an_unknown_name_is_a_mistake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conftest.SYSTEM_PACKAGES, "something", (lambda: True, "apt-get install something"))
    monkeypatch.setenv("CI", "true")
    conftest.require_system("something")
    with pytest.raises(ValueError, match="unknown system package 'postgres'"):
        conftest.require_system("postgres")


@pytest.mark.parametrize(
    ("arguments", "in_this_process"),
    [
        (["tests"], False),
        (["tests/test_model.py", "tests/test_data.py"], False),
        (["tests/test_model.py"], True),
        (["tests/test_model.py::test_one", "tests/test_model.py::test_two"], True),
    ],
)
def test_auto_runs_one_file_in_this_process_and_more_on_every_core(
    arguments: list[str], in_this_process: bool
) -> None:
    class Config:
        args = arguments

    workers = conftest.pytest_xdist_auto_num_workers(Config())  # type: ignore[arg-type]
    assert (workers == 0) == in_this_process
    assert workers in (0, cores())
