"""Which strings name a PostgreSQL database: the one rule, shared by every store opener.

A leaf module (it imports nothing of flowgen), so both `flowgen._stores.locations`, which
opens the store a string names, and the PostgreSQL store itself, which refuses anything
else, ask the same question without importing each other.
"""

from __future__ import annotations

from typing import Final

__all__ = ["is_postgres_url"]

_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """True if *location* names a PostgreSQL database (``postgresql://...``)."""
    return isinstance(location, str) and location.startswith(_POSTGRES_SCHEMES)
