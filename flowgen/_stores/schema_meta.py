"""What makes a database flowgen's, and which schema version it has: one rule for every store.

A flowgen database has a ``flowgen_meta`` table (``key``, ``value``) with
``application = 'flowgen'`` and ``schema_version = N``. `check_meta` reads what a store found
(its table names and that table's rows) and says what to do: create the schema (an empty
database), migrate from an older version, or nothing; or refuses, before anything is written:

* tables but no ``flowgen_meta``, another application, an unreadable version, or a flowgen
  database lacking one of its tables: `NotAFlowgenDatabase` (use another database);
* a newer schema version: `SchemaVersionError` (upgrade flowgen);
* an older version that no migration reaches: `SchemaVersionError`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

from flowgen._vocabulary.errors import NotAFlowgenDatabase, SchemaVersionError

__all__ = ["APPLICATION", "META_TABLE", "check_meta"]

APPLICATION: Final = "flowgen"
"""``flowgen_meta.application`` of every flowgen database."""
META_TABLE: Final = "flowgen_meta"


def check_meta(
    where: str,
    tables: Collection[str],
    meta: Mapping[str, str] | None,
    *,
    current: int,
    oldest_migratable: int,
    required: Collection[str],
    kind: str = "database",
) -> int | None:
    """The schema version a database has, after checking it is flowgen's.

    Args:
        where: The database, as messages name it (a path, a URL without its password).
        tables: The names of the tables it has.
        meta: The rows of its ``flowgen_meta``, if it has that table.
        current: The schema version this flowgen writes.
        oldest_migratable: The oldest version this flowgen migrates from.
        required: The tables a flowgen database of the current version has.
        kind: What *where* is, as messages call it ("database", "file").

    Returns:
        ``None`` for an empty database (create the schema), else its version (equal to
        *current*, or older and migratable).

    Raises:
        NotAFlowgenDatabase: It is not a flowgen database.
        SchemaVersionError: Its version is newer than *current*, or older than
            *oldest_migratable*.
    """
    if not tables:
        return None
    if meta is None:
        ordered = sorted(tables)
        listed = ", ".join(ordered[:10]) + (", ..." if len(ordered) > 10 else "")
        raise NotAFlowgenDatabase(
            f"{where} is not a flowgen database (it has tables {listed} but no "
            f"{META_TABLE}); use another {kind} for flowgen"
        )
    if meta.get("application") != APPLICATION:
        raise NotAFlowgenDatabase(
            f"{where} is not a flowgen database: its {META_TABLE} table says application "
            f"{meta.get('application')!r}"
        )
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise NotAFlowgenDatabase(
            f"{where} has an unreadable schema_version "
            f"{meta.get('schema_version')!r} in {META_TABLE}"
        ) from None
    if version > current:
        raise SchemaVersionError(
            f"{where} has flowgen schema version {version}, written by a newer flowgen; "
            f"this flowgen reads schema version {current}. Upgrade flowgen "
            f"(pip install -U flowgen-durable) to open it; the {kind} was not changed"
        )
    if version < oldest_migratable:
        raise SchemaVersionError(
            f"{where} has flowgen schema version {version}, which this flowgen (schema "
            f"version {current}) cannot migrate; the {kind} was not changed"
        )
    if version == current:
        absent = [name for name in required if name not in tables]
        if absent:
            raise NotAFlowgenDatabase(
                f"{where} says it is a flowgen database but lacks the tables "
                f"{', '.join(absent)}"
            )
    return version
