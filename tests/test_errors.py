"""The one line said about an error (`mnist_study.errors.first_line`)."""

from __future__ import annotations

from mnist_study.errors import first_line


def test_only_the_first_line_of_a_long_message_is_kept() -> None:
    error = RuntimeError("  (sqlite3.OperationalError) database is locked\n[SQL: UPDATE trials ...]\n  ")
    assert first_line(error) == "(sqlite3.OperationalError) database is locked"


def test_an_empty_message_is_said_by_its_type() -> None:
    assert first_line(ConnectionResetError()) == "ConnectionResetError"
    assert first_line(ValueError("  \n ")) == "ValueError"
