"""The PostgreSQL schema: its tables, its version, and the migrations between versions.

Rules:

* **The documented tables and columns are DuckDB's** (``docs/sql.md``): ``workflows``,
  ``events``, ``flowgen_meta``, with the same names, meanings and NULLs. Text is ``text``,
  times ``timestamptz``, JSON ``json``. Not ``jsonb``: jsonb re-orders object keys and turns
  ``1e+16`` into the integer ``10000000000000000``, so a history reloaded from it would
  feed a workflow a dict in another key order and an int where it first saw a float: a
  replay that can diverge from the first run. ``json`` keeps the codec's text exactly (as
  DuckDB's JSON does), and ``->``, ``->>`` and ``json_*`` reach inside it the same way.
* **Columns beyond the documented ones** are the store's bookkeeping, present from version 1
  so the fleet and the analytics copy need no rewrite of big tables:

  - ``workflows.row_order``: insertion order (DuckDB's ``rowid``), the tie-break of "latest
    run" when two runs of one id start at the same instant.
  - ``workflows.owner``, ``lease_expires_at``, ``epoch``: the engine that holds the run, until
    when, and the fencing epoch it claimed it with (bumped by every claim; a commit for the
    run carries the epoch it holds and fails if the row has moved on). Unused until the
    fleet: NULL, NULL, 0.
  - ``txid`` on both tables: the transaction that last wrote the row
    (``pg_current_xact_id()``). The analytics copy follows the tables by it: every
    transaction below ``pg_snapshot_xmin(pg_current_snapshot())`` has ended, so copying the
    rows with ``last_horizon <= txid < horizon`` and then moving ``last_horizon`` up misses
    none and copies each once (a sequence would not do: values are taken in one order and
    committed in another). ``events_txid`` and ``workflows_txid`` (version 2) serve that
    range scan.
  - ``flowgen_meta.database_id`` (version 2): the database's identity (a uuid4 in hex), which
    an analytics copy records.

* ``schedules`` (version 2): DuckDB's columns (`flowgen._stores.schedule_rows`); version 4
  adds ``skipped`` and ``triggered_at``, as DuckDB's does.

* **The fleet's tables** (version 2, `flowgen._stores.postgres_leases` states their rules):

  - ``fleet_messages`` (``id``, ``workflow_id``, ``run_id``, ``kind``, ``body``,
    ``posted_at``): what one engine has for a run another holds (a signal, a cancel, an
    activity's outcome, a child's end); deleted by the transaction that records it.
  - ``fleet_claims`` (``run_id``, ``epoch``, ``owner``, ``claimed_at``): every claim of a
    run, and every run's first holder (epoch 1, or 0 for a run stored free): who held each
    epoch.
  - ``fleet_tasks`` (``id``, ``workflow_id``, ``run_id``, ``attempt``, ``scheduled``,
    ``task_queue``, ``taken_by``, ``taken_until``, ``posted_at``): an activity attempt
    posted for any engine to run (`FleetOptions.share_activities`), its
    ``activity_scheduled`` event, the activity's task queue (only an engine serving it
    takes the task), and which engine runs it until when; deleted as its outcome is posted
    to the run's holder.
  - ``events.epoch``: the fencing epoch of the transaction that wrote the event (NULL for
    a store opened outside a fleet, a tool's).
  - ``fleet_tasks.started_at``, ``beat_at``, ``details`` (version 4): when the engine running
    a posted attempt started it and last recorded a heartbeat (on that engine's clock),
    and the heartbeat's details (encoded), so that the run's holder enforces the attempt's
    deadlines and the next attempt reads the details, whatever happens to that engine
    (`flowgen._stores.postgres_task_watch`).

* ``pruned_runs`` (version 3: ``run_id``, ``pruned_at``, ``txid``): one row per run that
  ``engine.prune`` deleted, written by the transaction that deleted its rows (so its
  ``txid`` is theirs). An analytics copy reads the ones in the ``txid`` range it copies and
  deletes those runs' rows from its own tables (`flowgen._stores.duckdb_mirror`). Nothing
  deletes them: a copy refreshed after any length of time still follows every prune (about
  100 bytes a run; the operator may trim old rows once every copy has refreshed past them,
  see docs/operations.md).

* **Versions.** ``flowgen_meta`` holds ``application = 'flowgen'`` and ``schema_version``.
  ``MIGRATIONS[n]`` takes a database from version n-1 to n; a new database runs them all.
  Opening runs the missing ones, in one transaction with the version bump, under an
  advisory lock so engines starting together do it once. Anything that is not flowgen's is
  refused before a statement is run (`flowgen._stores.schema_meta`).
* Statuses are ``text`` with a CHECK (never an ENUM: it can't lose or rename values); kinds
  have no CHECK, so a future flowgen adds an event kind without touching the table.
"""

from __future__ import annotations

from typing import Final

import psycopg

from flowgen._stores.protocol import RUN_STATUSES
from flowgen._stores.schedule_rows import OVERLAPS
from flowgen._stores.schema_meta import APPLICATION, META_TABLE, check_meta

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "prepare_schema"]

SCHEMA_VERSION: Final = 4
"""The version of the tables below; stored in ``flowgen_meta``."""

TABLES: Final = (
    "workflows",
    "events",
    META_TABLE,
    "schedules",
    "fleet_messages",
    "fleet_claims",
    "fleet_tasks",
    "pruned_runs",
)

_STATUSES: Final = ", ".join(f"'{status}'" for status in RUN_STATUSES)

_V1: Final = (
    f"""CREATE TABLE workflows (
    workflow_id text NOT NULL,
    run_id text PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ({_STATUSES})),
    args json NOT NULL,
    kwargs json NOT NULL,
    result json,
    error json,
    tags json NOT NULL,
    parent_id text,
    started_at timestamptz NOT NULL,
    closed_at timestamptz,
    row_order bigint GENERATED ALWAYS AS IDENTITY,
    owner text,
    lease_expires_at timestamptz,
    epoch bigint NOT NULL DEFAULT 0,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id()
)""",
    # get_run(workflow_id) and latest_runs: the engine's hot path (start, signal, handles).
    "CREATE INDEX workflows_workflow_id ON workflows (workflow_id, started_at)",
    # unfinished() (recovery), and the fleet's claims of running runs.
    "CREATE INDEX workflows_running ON workflows (started_at) WHERE status = 'running'",
    # The primary key is the optimistic "append event N" check: two transactions appending
    # the same event of a run cannot both commit, whoever wrote them. It also serves
    # loading a history (WHERE run_id = ... ORDER BY event_id).
    """CREATE TABLE events (
    workflow_id text NOT NULL,
    run_id text NOT NULL,
    event_id integer NOT NULL,
    seq integer,
    kind text NOT NULL,
    name text,
    payload json NOT NULL,
    attempt integer,
    recorded_at timestamptz NOT NULL,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (run_id, event_id)
)""",
    "CREATE INDEX events_txid ON events (txid)",
    f"""CREATE TABLE {META_TABLE} (
    key text PRIMARY KEY,
    value text NOT NULL
)""",
)

_OVERLAPS: Final = ", ".join(f"'{overlap}'" for overlap in OVERLAPS)

# Version 2: schedules, the same columns as DuckDB's (see `flowgen._stores.schedule_rows`).
_V2_SCHEDULES: Final = (
    f"""CREATE TABLE schedules (
    schedule_id text PRIMARY KEY,
    workflow text NOT NULL,
    args json NOT NULL,
    kwargs json NOT NULL,
    cron text,
    every_seconds bigint,
    timezone text NOT NULL,
    overlap text NOT NULL CHECK (overlap IN ({_OVERLAPS})),
    jitter_seconds double precision NOT NULL,
    catchup_window_seconds double precision,
    paused boolean NOT NULL,
    note text NOT NULL,
    next_at timestamptz NOT NULL,
    fires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    buffered_at timestamptz,
    last_workflow_id text,
    last_fired_at timestamptz,
    revision bigint NOT NULL
)""",
)


# Version 2: the fleet (flowgen._stores.postgres_leases): messages for runs another engine
# holds, the log of claims, and the epoch each event was written at.
_V2_FLEET: Final = (
    """CREATE TABLE fleet_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id text NOT NULL,
    run_id text,
    kind text NOT NULL,
    body json NOT NULL,
    posted_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX fleet_messages_workflow_id ON fleet_messages (workflow_id)",
    """CREATE TABLE fleet_claims (
    run_id text NOT NULL,
    epoch bigint NOT NULL,
    owner text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, epoch)
)""",
    """CREATE TABLE fleet_tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id text NOT NULL,
    run_id text NOT NULL,
    attempt integer NOT NULL,
    scheduled json NOT NULL,
    task_queue text NOT NULL DEFAULT 'default',
    taken_by text,
    taken_until timestamptz,
    posted_at timestamptz NOT NULL DEFAULT now()
)""",
    "ALTER TABLE events ADD COLUMN epoch bigint",
    # A new run's lease: now() plus the seconds the writing engine's session says
    # (flowgen._stores.postgres_leases.LEASE_SETTING); none said: lapsed at once.
    """ALTER TABLE workflows ALTER COLUMN lease_expires_at SET DEFAULT now()
    + make_interval(secs => coalesce(
        nullif(current_setting('flowgen.lease', true), ''), '0')::float8)""",
    # The runs an engine holds: its renewals and its messages' look-up.
    "CREATE INDEX workflows_owner ON workflows (owner) WHERE status = 'running'",
)

# Version 2, for the analytics copy (flowgen._stores.duckdb_mirror): the database's identity,
# which a copy records so that it never resumes from another database; and an index on
# workflows.txid, so that following the runs' changes reads only what changed (events have
# one since version 1).
_V2_ANALYTICS: Final = (
    (
        f"INSERT INTO {META_TABLE} (key, value) "
        "VALUES ('database_id', replace(gen_random_uuid()::text, '-', '')) "
        "ON CONFLICT (key) DO NOTHING"
    ),
    "CREATE INDEX workflows_txid ON workflows (txid)",
)

# Version 3: the runs `engine.prune` deleted, stamped with the deleting transaction, which
# an analytics copy follows (flowgen._stores.duckdb_mirror) like the rows it copies.
_V3_PRUNED: Final = (
    """CREATE TABLE pruned_runs (
    run_id text PRIMARY KEY,
    pruned_at timestamptz NOT NULL DEFAULT now(),
    txid xid8 NOT NULL DEFAULT pg_current_xact_id()
)""",
    "CREATE INDEX pruned_runs_txid ON pruned_runs (txid)",
)

# Version 4: a posted attempt's start and last heartbeat, recorded by the engine running it
# (flowgen._stores.postgres_task_watch): its holder enforces its deadlines from them.
_V4_TASK_WATCH: Final = (
    """ALTER TABLE fleet_tasks ADD COLUMN started_at timestamptz,
    ADD COLUMN beat_at timestamptz,
    ADD COLUMN details json""",
)

# Version 4 also: DuckDB's version 3, a schedule's skipped count and pending trigger.
_V4_SCHEDULES: Final = (
    "ALTER TABLE schedules ADD COLUMN skipped bigint NOT NULL DEFAULT 0",
    "ALTER TABLE schedules ADD COLUMN triggered_at timestamptz",
)

MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: _V1,
    2: (*_V2_SCHEDULES, *_V2_FLEET, *_V2_ANALYTICS),
    3: _V3_PRUNED,
    4: (*_V4_TASK_WATCH, *_V4_SCHEDULES),
}
"""``MIGRATIONS[n]``: the statements that take a database from version n-1 to n."""

# The first version ever released: every stored version since has its migrations here.
_OLDEST_STORED: Final = 1

# Serialises schema work among engines opening one database at once (any constant bigint,
# this one is "flowgen" in ASCII).
_SCHEMA_LOCK: Final = 0x666C6F7767656E


def _tables(con: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [
        str(name)
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY table_name"
        ).fetchall()
    ]


def prepare_schema(con: psycopg.Connection[tuple[object, ...]], where: str) -> None:
    """Create the schema in an empty database, migrate an older one, or check it is current.

    Runs in one transaction of its own on *con* (an autocommit connection).

    Raises:
        NotAFlowgenDatabase: The database has tables of something else (left untouched).
        SchemaVersionError: A newer flowgen wrote it, or no migration reaches it.
    """
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
        tables = _tables(con)
        meta = None
        if META_TABLE in tables:
            meta = {
                str(key): str(value)
                for key, value in con.execute(
                    f"SELECT key, value FROM {META_TABLE}"
                ).fetchall()
            }
        version = check_meta(
            where,
            tables,
            meta,
            current=SCHEMA_VERSION,
            oldest_migratable=_OLDEST_STORED,
            required=TABLES,
        )
        if version == SCHEMA_VERSION:
            return
        for step in range((version or 0) + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                con.execute(statement)
        con.execute(
            f"INSERT INTO {META_TABLE} (key, value) VALUES "
            "('application', %s), ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [APPLICATION, str(SCHEMA_VERSION)],
        )
