"""Which strings name a PostgreSQL database, and how messages name one (without its password).

A leaf module (it imports nothing of flowgen), so both `flowgen._stores.locations`, which
opens the store a string names, and the PostgreSQL store itself, which refuses anything
else, ask the same question without importing each other.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["display_url", "is_postgres_url"]

_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """True if *location* names a PostgreSQL database (``postgresql://...``)."""
    return isinstance(location, str) and location.startswith(_POSTGRES_SCHEMES)


def display_url(url: str) -> str:
    """*url* without its password, for messages."""
    url = re.sub(r"(://[^:/@?]*):[^@/?]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)
