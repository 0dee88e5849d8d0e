"""What the numbers were computed with: versions, lock file, code, CPU and threads, determinism, data.

Each fact comes with the shell command that reads it again, so a reader can check it on their own machine.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from omegaconf import DictConfig

from mnist_study.data import ARRAY_SHA256, array_sha256, file_sha256, load_mnist
from mnist_study.paths import PROJECT_ROOT
from mnist_study.provenance import git_state, package_versions

PY = ".venv/bin/python -c"


@dataclass(frozen=True)
class Fact:
    name: str
    value: str
    command: str


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def project_file_sha256(path: str) -> str:
    """A project file's sha256, or why it could not be read: an environment fact never stops the report."""
    try:
        return file_sha256(PROJECT_ROOT / path)
    except OSError as error:
        return f"unreadable ({error.strerror})"


def threads(value: int | None) -> str:
    """A thread-pool size as a refit's config sets it (null and 0 leave the choice to TensorFlow)."""
    return "0 (TensorFlow's choice)" if not value else str(value)


def facts(cfg: DictConfig) -> list[Fact]:
    """Every environment fact; `cfg` is a refit's config. How TensorFlow ran (its thread pools, op determinism)
    is what that config set in the process that trained each refit, which with refit workers is not this one."""
    commit, dirty = git_state()
    rows = [Fact("python", platform.python_version(), f"{PY} 'import platform; print(platform.python_version())'")]
    for package, version in package_versions().items():
        rows.append(
            Fact(package, version, f"{PY} 'import importlib.metadata as m; print(m.version(\"{package}\"))'")
        )
    rows += [
        Fact("uv.lock sha256", project_file_sha256("uv.lock"), "sha256sum uv.lock"),
        Fact("git commit", commit, "git rev-parse HEAD"),
        Fact("git dirty (tracked files)", str(dirty).lower(), "git status --porcelain --untracked-files=no"),
        Fact("CPU", cpu_model(), "grep -m1 'model name' /proc/cpuinfo"),
        Fact("os.cpu_count()", str(os.cpu_count()), f"{PY} 'import os; print(os.cpu_count())'"),
        Fact(
            "TF intra-op threads per refit",
            threads(cfg.train.intra_op_threads),
            "train.intra_op_threads in a refit's config.yaml",
        ),
        Fact(
            "TF inter-op threads per refit",
            threads(cfg.train.inter_op_threads),
            "train.inter_op_threads in a refit's config.yaml",
        ),
        Fact(
            "op determinism (train.deterministic)",
            "true (each refit enables TensorFlow's op determinism before it trains)"
            if cfg.train.deterministic
            else "false",
            "train.deterministic in a refit's config.yaml",
        ),
    ]
    (x_train, y_train), (x_test, y_test) = load_mnist(cfg.data.cache)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for name, array in arrays.items():
        digest = array_sha256(array)
        status = "as expected" if digest == ARRAY_SHA256[name] else "NOT the expected data"
        rows.append(
            Fact(
                f"{name} sha256 ({status})",
                digest,
                f"{PY} 'from mnist_study.data import load_mnist, array_sha256 as h; "
                f"(a, b), (c, d) = load_mnist(); print(h({dict(zip(arrays, 'abcd', strict=True))[name]}))'",
            )
        )
    return rows
