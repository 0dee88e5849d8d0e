"""An error said in one line: the first line of its message.

MLflow's, SQLAlchemy's and Hydra's errors run on to stack traces, SQL and JSON bodies; every one-line message
the project prints or stores about such an error quotes only this line. This module imports nothing heavy.
"""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
