"""What produced a run: the commit, the libraries and the data, as tags on every run and facts in the report."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess

from mnist_study.data import data_hashes
from mnist_study.paths import PROJECT_ROOT

# The libraries whose versions decide a run's numbers.
PACKAGES = ("tensorflow", "keras", "hydra-core", "optuna", "mlflow", "numpy", "pandas")


@functools.cache
def git_state() -> tuple[str, bool]:
    """The commit the code runs from and whether the work tree has uncommitted changes (once per process)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, bool(status.strip())


def package_versions() -> dict[str, str]:
    """The installed version of each package in `PACKAGES`."""
    return {package: importlib.metadata.version(package) for package in PACKAGES}


def environment_tags() -> dict[str, str]:
    """Tags that let anyone tell later exactly what code, data and libraries produced a run."""
    commit, dirty = git_state()
    tags = {
        "mlflow.source.git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "version.python": platform.python_version(),
    }
    tags.update({f"version.{package}": version for package, version in package_versions().items()})
    tags.update({f"data.sha256.{name}": digest for name, digest in data_hashes().items()})
    return tags
