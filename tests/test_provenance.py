"""A run's key: the same refit (config, seed, data, code) gets the same key, and anything that changes the numbers
changes it; the code version follows the commit and any uncommitted change, in a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import small_config
from mnist_study.data import ARRAY_SHA256
from mnist_study.provenance import code_version, key_of, run_key

CODE = "0123abcd;python=3.11.9,tensorflow=2.21.0"


def key(*overrides: str, data: dict[str, str] = ARRAY_SHA256, code: str = CODE) -> str:
    return key_of(OmegaConf.to_container(small_config(*overrides), resolve=True), data, code)


def test_the_same_refit_has_the_same_key() -> None:
    assert key("seed=1") == key("seed=1")


@pytest.mark.parametrize("override", ["seed=1", "model.units=64", "optimizer=adam", "data.val_size=0"])
def test_a_change_of_config_or_seed_changes_the_key(override: str) -> None:
    assert key(override) != key()


def test_other_data_or_other_code_changes_the_key() -> None:
    assert key(data={**ARRAY_SHA256, "x_train": "0" * 64}) != key()
    assert key(code=CODE.replace("0123abcd", "0123abce")) != key()


@pytest.mark.parametrize(
    "override",
    ["tracking.uri=sqlite:////elsewhere/mlflow.db", "tracking.plots=false", "name=mine", "train.verbose=0"],
)
def test_where_a_run_logs_what_it_is_called_and_what_it_prints_leave_the_key_alone(override: str) -> None:
    assert key(override) == key()


def test_a_run_in_this_repository_has_a_key() -> None:
    assert run_key(small_config()) == run_key(small_config("train.verbose=1"))
    assert run_key(small_config()) != run_key(small_config("seed=3"))


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


def test_the_code_version_is_the_code_tree_and_a_digest_of_its_uncommitted_changes(tmp_path: Path) -> None:
    version = code_version.__wrapped__  # Uncached: the work tree changes within this test.
    git(tmp_path, "init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("epochs = 5\n")
    (tmp_path / "README.md").write_text("How to train.\n")
    commit(tmp_path, "first")
    tree = git(tmp_path, "rev-parse", "HEAD:src")
    clean = version(tmp_path)
    assert clean.startswith(f"{tree};python=")
    # Documents, tests and untracked files are not code a run imports: neither changes nor commits of them count.
    (tmp_path / "notes.txt").write_text("untracked\n")
    (tmp_path / "README.md").write_text("How to train, better.\n")
    assert version(tmp_path) == clean
    commit(tmp_path, "the README only")
    assert version(tmp_path) == clean
    (tmp_path / "src" / "train.py").write_text("epochs = 6\n")
    six = version(tmp_path)
    (tmp_path / "src" / "train.py").write_text("epochs = 7\n")
    seven = version(tmp_path)
    assert six.startswith(f"{tree}+") and seven.startswith(f"{tree}+")
    commit(tmp_path, "seven epochs")
    assert len({clean, six, seven, version(tmp_path)}) == 4
    assert version(tmp_path / "nowhere") == "unknown"


def commit(folder: Path, message: str) -> None:
    git(folder, "add", "-A")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message)
