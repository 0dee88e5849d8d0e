"""Files written whole or not at all: a reader (or a report started again after a kill) never finds half of one.

Each file is first written in full to a temporary file in its own folder, then renamed over its name with
`os.replace`, which POSIX makes atomic within one file system. The renames come after every temporary file is
complete, so a process killed while writing leaves every file as it was, plus at most a few hidden `.tmp` files
that the next write in that folder removes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

# Temporary files are named `.<name>.<random>.tmp`, beside the file they become.
SUFFIX = ".tmp"


def write_whole(files: Mapping[Path, str | bytes]) -> None:
    """Write every file (text as UTF-8) whole: all complete temporaries first, then one rename each."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_leftovers(path)
            written.append((temporary_copy(path, content), path))
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in written:
        os.replace(temporary, path)


def temporary_copy(path: Path, content: str | bytes) -> Path:
    """`content` in a new temporary file beside `path`, flushed to disk."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def remove_leftovers(path: Path) -> None:
    """Temporary copies of `path` that a killed writer left behind."""
    for leftover in path.parent.glob(f".{path.name}.*{SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
