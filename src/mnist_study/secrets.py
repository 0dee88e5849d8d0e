"""Keep credentials out of everything we log or print."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s]+:)(?P<password>[^/@\s]+)(?P<tail>@)")


def redact(text: str) -> str:
    """Hide the password of any `scheme://user:password@host` URL in a string."""
    return _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
