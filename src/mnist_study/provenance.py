"""What produced a run: the commit, the libraries and the data, as tags on every run and facts in the report.

A run's key (`run_key`, the tag `run.key`) sums all of it up with the run's resolved config: two runs with the
same key computed the same thing, so a FINISHED one stands for the other (the report reuses refits by it).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_study.data import data_hashes
from mnist_study.paths import PROJECT_ROOT

# The libraries whose versions decide a run's numbers.
PACKAGES = ("tensorflow", "keras", "hydra-core", "optuna", "mlflow", "numpy", "pandas")
# The folder of the code a run imports (the configs are in the key as resolved values).
CODE_FOLDER = "src"
# The tag every run carries its key in (see `run_key`).
RUN_KEY_TAG = "run.key"
# Config keys that say where a run logs, what it is called, what it prints or where a cache lies, and so never
# change what it computes: `tracking` and `trial` are bookkeeping, `name` a label, `train.verbose` Keras's output,
# `data.cache` a path (the data's content is in the key by its digest).
NOT_IN_KEY = ("tracking", "trial", "name", "train.verbose", "data.cache")


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


@functools.cache
def code_version(root: Path = PROJECT_ROOT) -> str:
    """The code a run imports: git's id of the `src/` tree at HEAD, with a digest of its uncommitted changes when
    there are any, and the Python and library versions (`unknown` outside a git work tree).

    The tree, not the commit: a commit of documents or tests alone leaves every run's numbers as they were,
    so it leaves the code version as it was too.
    """
    try:
        tree = subprocess.run(
            ["git", "rev-parse", f"HEAD:{CODE_FOLDER}"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "diff", "HEAD", "--binary", "--", CODE_FOLDER], cwd=root, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    code = f"{tree}+{hashlib.sha256(changes).hexdigest()[:16]}" if changes else tree
    libraries = ",".join(f"{package}={version}" for package, version in package_versions().items())
    return f"{code};python={platform.python_version()},{libraries}"


def key_of(config: Mapping[str, Any], data: Mapping[str, str], code: str) -> str:
    """The sha256 of a resolved config (without `NOT_IN_KEY`), the data's digests and the code version."""
    flat = {key: value for key, value in flatten(config).items() if in_key(key)}
    text = json.dumps({"config": flat, "data": dict(data), "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def in_key(key: str) -> bool:
    """Whether a dotted config key (`train.precision`) is in a run's key: whether it may change what the run
    computes."""
    return not any(key == left_out or key.startswith(f"{left_out}.") for left_out in NOT_IN_KEY)


def run_key(cfg: DictConfig) -> str | None:
    """What a run computes, as one key: its resolved config (the seed included), the data and the code; None when
    the code is not in a git work tree (nothing can be said to equal it)."""
    code = code_version()
    if code == "unknown":
        return None
    return key_of(OmegaConf.to_container(cfg, resolve=True), data_hashes(), code)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping to dotted keys (`model.units`, `optimizer.name`, ...)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


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
