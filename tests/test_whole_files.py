"""Files written whole or not at all: a failure while writing leaves every file as it was and no temporary."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_study.whole_files import write_whole


def test_files_are_written_and_replaced_and_no_temporary_stays(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("old\n")
    write_whole({tmp_path / "report.md": "new\n", tmp_path / "figures" / "a.png": b"\x89PNG"})
    assert (tmp_path / "report.md").read_text() == "new\n"
    assert (tmp_path / "figures" / "a.png").read_bytes() == b"\x89PNG"
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a.png", "figures", "report.md"]


def test_a_failure_while_writing_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("old report\n")
    (tmp_path / "report.html").write_text("<html>old</html>\n")
    with pytest.raises(TypeError):
        # The second file cannot be written (not text nor bytes): the first, complete, is not renamed either.
        write_whole({tmp_path / "report.md": "new report\n", tmp_path / "report.html": 42})  # type: ignore[dict-item]
    assert (tmp_path / "report.md").read_text() == "old report\n"
    assert (tmp_path / "report.html").read_text() == "<html>old</html>\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html", "report.md"]


def test_temporaries_a_killed_writer_left_are_removed_by_the_next_write(tmp_path: Path) -> None:
    leftover = tmp_path / ".report.md.k1ll3d.tmp"
    leftover.write_text("half a rep")
    other = tmp_path / ".notes.md.x.tmp"
    other.write_text("another file's")
    write_whole({tmp_path / "report.md": "whole\n"})
    assert not leftover.exists()
    assert other.exists()
    assert (tmp_path / "report.md").read_text() == "whole\n"
